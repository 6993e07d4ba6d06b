package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"
)

// buildVersion returns the version of a module the binary was built with.
func buildVersion(path string) (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	for _, m := range bi.Deps {
		if m.Path == path {
			return m.Version, true
		}
	}
	return "", false
}

// The agent registers its flags in daemon/cmd, which does not build as a
// dependency from the module proxy (some of its dependencies are not
// served). So the defaults are taken from the Go code of the registration
// calls — flags.Duration(option.X, <expr>, "...") — with each <expr>
// evaluated against the compiled values of Cilium's own constants
// (evalConsts). An expression the evaluator does not understand is an
// error, never a guess.

// flagFiles are the files (relative to the module) registering the flags.
var flagFiles = []string{"daemon/cmd/daemon_main.go"}

// flagDefaults returns the default of every flag in wantedFlags() that the
// agent registers, formatted as facts.Run documents.
func flagDefaults(src string, _ map[string]string) (map[string]string, error) {
	consts := evalConsts()
	want := map[string]bool{}
	for _, f := range wantedFlags() {
		want[f] = true
	}
	out := map[string]string{}
	for _, rel := range flagFiles {
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, filepath.Join(src, rel), nil, 0)
		if err != nil {
			return nil, err
		}
		var evalErr error
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 2 || evalErr != nil {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "flags" {
				return true
			}
			name, err := eval(call.Args[0], consts)
			if err != nil || name.kind != kString || !want[name.s] {
				return true
			}
			v, err := eval(call.Args[1], consts)
			if err != nil {
				evalErr = fmt.Errorf("%s: default of flag %s: %w", fset.Position(call.Pos()), name.s, err)
				return false
			}
			out[name.s] = v.String()
			return true
		})
		if evalErr != nil {
			return nil, evalErr
		}
	}
	return out, nil
}

type kind int

const (
	kNumber kind = iota
	kDuration
	kString
	kBool
)

type value struct {
	kind kind
	n    float64 // numbers; durations in nanoseconds
	s    string
	b    bool
}

func (v value) String() string {
	switch v.kind {
	case kDuration:
		return time.Duration(v.n).String()
	case kString:
		return v.s
	case kBool:
		return strconv.FormatBool(v.b)
	}
	return strconv.FormatFloat(v.n, 'g', -1, 64)
}

// constValue turns a compiled Go value into an evaluator value.
func constValue(x any) (value, error) {
	switch c := x.(type) {
	case time.Duration:
		return value{kind: kDuration, n: float64(c)}, nil
	case string:
		return value{kind: kString, s: c}, nil
	case bool:
		return value{kind: kBool, b: c}, nil
	case int:
		return value{n: float64(c)}, nil
	case int64:
		return value{n: float64(c)}, nil
	case uint32:
		return value{n: float64(c)}, nil
	case float64:
		return value{n: c}, nil
	}
	return value{}, fmt.Errorf("constant of type %T", x)
}

var timeUnits = map[string]time.Duration{
	"Nanosecond": time.Nanosecond, "Microsecond": time.Microsecond, "Millisecond": time.Millisecond,
	"Second": time.Second, "Minute": time.Minute, "Hour": time.Hour,
}

func eval(e ast.Expr, consts map[string]any) (value, error) {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return eval(e.X, consts)
	case *ast.BasicLit:
		switch e.Kind {
		case token.INT, token.FLOAT:
			f, err := strconv.ParseFloat(e.Value, 64)
			if err != nil {
				n, ierr := strconv.ParseInt(e.Value, 0, 64)
				if ierr != nil {
					return value{}, err
				}
				f = float64(n)
			}
			return value{n: f}, nil
		case token.STRING:
			s, err := strconv.Unquote(e.Value)
			return value{kind: kString, s: s}, err
		}
	case *ast.Ident:
		switch e.Name {
		case "true", "false":
			return value{kind: kBool, b: e.Name == "true"}, nil
		}
	case *ast.SelectorExpr:
		pkg, ok := e.X.(*ast.Ident)
		if !ok {
			break
		}
		if pkg.Name == "time" {
			if d, ok := timeUnits[e.Sel.Name]; ok {
				return value{kind: kDuration, n: float64(d)}, nil
			}
		}
		if c, ok := consts[pkg.Name+"."+e.Sel.Name]; ok {
			return constValue(c)
		}
		return value{}, fmt.Errorf("%s.%s is not among the compiled constants the extractor knows", pkg.Name, e.Sel.Name)
	case *ast.CallExpr:
		// time.Duration(x)
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok && len(e.Args) == 1 {
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "time" && sel.Sel.Name == "Duration" {
				v, err := eval(e.Args[0], consts)
				if err != nil {
					return value{}, err
				}
				return value{kind: kDuration, n: v.n}, nil
			}
		}
	case *ast.BinaryExpr:
		a, err := eval(e.X, consts)
		if err != nil {
			return value{}, err
		}
		b, err := eval(e.Y, consts)
		if err != nil {
			return value{}, err
		}
		k := kNumber
		if a.kind == kDuration || b.kind == kDuration {
			k = kDuration
		}
		switch e.Op {
		case token.MUL:
			return value{kind: k, n: a.n * b.n}, nil
		case token.ADD:
			return value{kind: k, n: a.n + b.n}, nil
		case token.SUB:
			return value{kind: k, n: a.n - b.n}, nil
		case token.QUO:
			if b.n == 0 {
				return value{}, fmt.Errorf("division by zero")
			}
			return value{kind: k, n: a.n / b.n}, nil
		}
	}
	return value{}, fmt.Errorf("cannot evaluate %T", e)
}
