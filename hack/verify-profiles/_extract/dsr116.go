//go:build cilium116

package main

import "github.com/cilium/cilium/pkg/maps/ctmap"

func dsrConst() map[string]any { return map[string]any{"ctmap.DSRInternal": ctmap.DSRInternal} }
