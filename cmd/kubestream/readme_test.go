package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// helpFlag is one flag as `kubestream <command> --help` prints it.
type helpFlag struct {
	// def is the default shown, "" when none is.
	def string
}

var helpLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: \S+)?\s{2,}(.*)$`)
var helpDefault = regexp.MustCompile(`\(default (.*)\)$`)

// helpFlags runs a command's --help in-process and returns its flags.
func helpFlags(t *testing.T, command string) map[string]helpFlag {
	t.Helper()
	var out bytes.Buffer
	if code := dispatch(context.Background(), []string{command, "--help"}, &out, &out); code != 0 {
		t.Fatalf("kubestream %s --help exited %d:\n%s", command, code, out.String())
	}
	flags := map[string]helpFlag{}
	for _, line := range strings.Split(out.String(), "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := helpFlag{}
		if d := helpDefault.FindStringSubmatch(m[2]); d != nil {
			f.def = strings.Trim(d[1], `"`)
		}
		flags[m[1]] = f
	}
	if len(flags) < 5 {
		t.Fatalf("no flags read from kubestream %s --help:\n%s", command, out.String())
	}
	return flags
}

// flagTable is a markdown table whose first column names flags.
type flagTable struct {
	header string
	rows   []flagRow
}

type flagRow struct {
	line     string
	flags    []string // without the dashes
	defaults []string // backticked literals of the default column
}

var tick = regexp.MustCompile("`([^`]*)`")

// flagTables returns the tables of a markdown file whose rows start with a
// backticked flag.
func flagTables(t *testing.T, rel string) []flagTable {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	var tables []flagTable
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		if i < 2 || !strings.HasPrefix(lines[i-1], "|") {
			continue
		}
		if !strings.HasPrefix(lines[i-1], "| `-") {
			tables = append(tables, flagTable{header: lines[i-2]})
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		row := flagRow{line: line}
		for _, m := range tick.FindAllStringSubmatch(cells[0], -1) {
			row.flags = append(row.flags, strings.TrimLeft(m[1], "-"))
		}
		if len(cells) > 2 {
			for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
				row.defaults = append(row.defaults, m[1])
			}
		}
		tables[len(tables)-1].rows = append(tables[len(tables)-1].rows, row)
	}
	return tables
}

// sameDefault compares a documented default with the one --help shows:
// durations by value (30m is 30m0s), no default shown as the zero value.
func sameDefault(doc, help string) bool {
	if doc == help {
		return true
	}
	if help == "" {
		return doc == "false" || doc == "0" || doc == ""
	}
	d1, err1 := time.ParseDuration(doc)
	d2, err2 := time.ParseDuration(help)
	return err1 == nil && err2 == nil && d1 == d2
}

// TestREADMEFlagTables holds the README's flag tables to --help: the run
// table to `kubestream run --help`, the connection table to run, tail and
// alert-bridge alike. Every flag named exists (deprecated spellings are
// hidden from --help and must not be listed), and a default written as a
// literal (backticked, one per flag of the row) is the one --help shows. Every flag of `run --help` is in the
// README or in the sink and image-storage docs' tables.
func TestREADMEFlagTables(t *testing.T) {
	help := map[string]map[string]helpFlag{}
	for _, c := range []string{"run", "tail", "alert-bridge"} {
		help[c] = helpFlags(t, c)
	}
	tables := flagTables(t, "README.md")
	commandsOf := map[string][]string{
		"| flag | default | meaning |":            {"run"},
		"| connection flag | default | meaning |": {"run", "tail", "alert-bridge"},
	}
	documented := map[string]bool{}
	seen := 0
	for _, table := range tables {
		commands, ok := commandsOf[table.header]
		if !ok {
			continue
		}
		seen++
		for _, row := range table.rows {
			for i, f := range row.flags {
				documented[f] = true
				for _, c := range commands {
					h, ok := help[c][f]
					if !ok {
						t.Errorf("README: --%s is not a flag of kubestream %s (row %s)", f, c, row.line)
						continue
					}
					if len(row.defaults) == len(row.flags) && !sameDefault(row.defaults[i], h.def) {
						t.Errorf("README: --%s defaults to %q, kubestream %s --help says %q", f, row.defaults[i], c, h.def)
					}
				}
			}
		}
	}
	if seen != len(commandsOf) {
		t.Fatalf("README: found %d of the %d flag tables (headers %v)", seen, len(commandsOf), commandsOf)
	}
	for _, doc := range []string{"docs/kafka.md", "docs/nats.md", "docs/imagestorage.md"} {
		for _, table := range flagTables(t, doc) {
			for _, row := range table.rows {
				for _, f := range row.flags {
					if _, ok := help["run"][f]; !ok {
						t.Errorf("%s: --%s is not a flag of kubestream run (row %s)", doc, f, row.line)
					}
					documented[f] = true
				}
			}
		}
	}
	for f := range help["run"] {
		if !documented[f] {
			t.Errorf("kubestream run --%s is in no flag table of README.md, docs/kafka.md, docs/nats.md or docs/imagestorage.md", f)
		}
	}
}
