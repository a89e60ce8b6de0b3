// Package table prints objects of a consumer.Store the way kubectl get
// does: a header of upper-case columns (NAME, READY, STATUS, ..., AGE),
// one row per object, wide columns on request, or the objects as a JSON or
// YAML List.
package table

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/kubestream/kubestream/pkg/consumer"
)

// Format is an output format of Print.
type Format string

// The formats, as kubectl's -o names them; "" is the default table.
const (
	Table Format = ""
	Wide  Format = "wide"
	JSON  Format = "json"
	YAML  Format = "yaml"
	Name  Format = "name"
)

// ParseFormat reads an -o value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case Table, Wide, JSON, YAML, Name:
		return f, nil
	}
	return "", fmt.Errorf("-o %q is unknown: use wide, json, yaml or name", s)
}

// Options say what to print around the objects.
type Options struct {
	Format Format
	// WithNamespace adds a NAMESPACE column (kubectl's -A).
	WithNamespace bool
	// WithCluster adds a CLUSTER column first (several clusters on the bus).
	WithCluster bool
	// Now is the time AGE is counted to; zero means time.Now().
	Now time.Time
	// Single prints the one object itself with -o json|yaml, not a List
	// (kubectl get <resource> <name>).
	Single bool
}

// Print writes objs (all of one resource) to w.
func Print(w io.Writer, objs []*consumer.Object, opts Options) error {
	switch opts.Format {
	case JSON, YAML:
		return printList(w, objs, opts.Format, opts.Single && len(objs) == 1)
	case Name:
		for _, o := range objs {
			if _, err := fmt.Fprintf(w, "%s/%s\n", nameKind(o), o.Name); err != nil {
				return err
			}
		}
		return nil
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if len(objs) == 0 {
		return nil
	}
	cols := columnsFor(objs[0].Resource)
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0) // kubectl's table writer settings
	var header []string
	if opts.WithCluster {
		header = append(header, "CLUSTER")
	}
	if opts.WithNamespace {
		header = append(header, "NAMESPACE")
	}
	header = append(header, cols.header...)
	if opts.Format == Wide {
		header = append(header, cols.wide...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, o := range objs {
		var row []string
		if opts.WithCluster {
			row = append(row, o.Cluster)
		}
		if opts.WithNamespace {
			row = append(row, o.Namespace)
		}
		main, wide := cols.row(o, opts.Now)
		row = append(row, main...)
		if opts.Format == Wide {
			row = append(row, wide...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// nameKind is the lower-case kind, with its group, as -o name prints it.
func nameKind(o *consumer.Object) string {
	k := strings.ToLower(o.Kind)
	if o.Group != "" {
		k += "." + o.Group
	}
	return k
}

// printList writes the objects as kubectl does with -o json|yaml: a v1
// List, or the object alone when single.
func printList(w io.Writer, objs []*consumer.Object, f Format, single bool) error {
	items := make([]any, 0, len(objs))
	for _, o := range objs {
		u, err := o.Unstructured()
		if err != nil {
			return err
		}
		items = append(items, u.Object)
	}
	var list any = map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{"resourceVersion": ""}}
	if single {
		list = items[0]
	}
	if f == YAML {
		b, err := yaml.Marshal(list)
		if err != nil {
			return fmt.Errorf("encode YAML: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	b, err := json.MarshalIndent(list, "", "    ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// age is kubectl's AGE: a short human duration since t, <unknown> when unset.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
