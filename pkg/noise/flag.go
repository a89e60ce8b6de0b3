package noise

import "strings"

// Paths is the --ignore-paths flag value: rules separated by commas (outside
// brackets, so data["a,b"] stays one path), the flag repeatable, a YAML list
// in the config file. The first value given replaces the defaults; an empty
// value ignores nothing.
type Paths struct {
	rules []string
	set   bool
}

// NewPaths returns the flag value holding the defaults.
func NewPaths(defaults []string) *Paths { return &Paths{rules: append([]string(nil), defaults...)} }

// Rules returns the rules given.
func (p *Paths) Rules() []string { return p.rules }

// Given reports whether the rules were set (flag, environment or config
// file) rather than left at the defaults.
func (p *Paths) Given() bool { return p.set }

func (p *Paths) String() string { return strings.Join(p.rules, ",") }

// Type names the value in --help.
func (p *Paths) Type() string { return "rules" }

// Set adds the rules of one value.
func (p *Paths) Set(v string) error {
	if !p.set {
		p.rules, p.set = nil, true
	}
	depth, start := 0, 0
	for i := 0; i <= len(v); i++ {
		switch {
		case i < len(v) && v[i] == '[':
			depth++
		case i < len(v) && v[i] == ']':
			depth--
		case i == len(v) || v[i] == ',' && depth == 0:
			if r := strings.TrimSpace(v[start:i]); r != "" {
				p.rules = append(p.rules, r)
			}
			start = i + 1
		}
	}
	return nil
}
