package sweep

// The types shared with the program come from its BTF (-type), never
// written by hand in Go.
//go:generate go tool bpf2go -cc clang-14 -target bpfel -type sweep_stats -type policy_set -type pod4 -type pod6 -type rule4 -type rule6 -type ct_const -type ct_state -type sweep_mode -type set_limit -type set_feature sweeper ../../bpf/sweep.bpf.c -- -O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu
