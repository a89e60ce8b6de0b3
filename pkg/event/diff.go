package event

import (
	"bytes"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxChangedPaths caps the paths listed for one update; past it the parents
// of the remaining differences are listed instead of their leaves.
const MaxChangedPaths = 128

// ChangedPaths lists the field paths that differ between two objects of the
// same Go type, in JSON field names. Map keys that are not plain identifiers
// are quoted (data["app.properties"]); slice elements are indexed when both
// slices have the same length, else the slice is listed as a whole.
// metadata.resourceVersion and metadata.managedFields are ignored.
func ChangedPaths(prev, next any) []string {
	a, b := reflect.ValueOf(prev), reflect.ValueOf(next)
	if !a.IsValid() || !b.IsValid() || a.Type() != b.Type() {
		return nil
	}
	d := differ{}
	d.walk(a, b, 0)
	return d.paths
}

type differ struct {
	segs  []string
	paths []string
}

var (
	timeType     = reflect.TypeOf(metav1.Time{})
	microType    = reflect.TypeOf(metav1.MicroTime{})
	quantityType = reflect.TypeOf(resource.Quantity{})
)

func (d *differ) add() {
	path := strings.Join(d.segs, "")
	path = strings.TrimPrefix(path, ".")
	if len(d.paths) >= MaxChangedPaths {
		return
	}
	d.paths = append(d.paths, path)
}

func (d *differ) push(seg string) { d.segs = append(d.segs, seg) }
func (d *differ) pop()            { d.segs = d.segs[:len(d.segs)-1] }

func (d *differ) walk(a, b reflect.Value, depth int) {
	if len(d.paths) >= MaxChangedPaths {
		return
	}
	switch a.Type() {
	case timeType:
		at, bt := a.Interface().(metav1.Time), b.Interface().(metav1.Time)
		if !at.Equal(&bt) {
			d.add()
		}
		return
	case microType:
		am, bm := a.Interface().(metav1.MicroTime), b.Interface().(metav1.MicroTime)
		if !am.Equal(&bm) {
			d.add()
		}
		return
	case quantityType:
		aq, bq := a.Interface().(resource.Quantity), b.Interface().(resource.Quantity)
		if aq.Cmp(bq) != 0 {
			d.add()
		}
		return
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				d.add()
			}
			return
		}
		if a.Kind() == reflect.Interface && a.Elem().Type() != b.Elem().Type() {
			d.add()
			return
		}
		d.walk(a.Elem(), b.Elem(), depth)
	case reflect.Struct:
		for _, f := range structFields(a.Type()) {
			if f.name != "" {
				d.push("." + f.name)
			}
			if !(depth == 1 && d.skipMeta(f.name)) {
				d.walk(a.Field(f.index), b.Field(f.index), depth+1)
			}
			if f.name != "" {
				d.pop()
			}
		}
	case reflect.Map:
		d.walkMap(a, b, depth)
	case reflect.Slice:
		if a.Type().Elem().Kind() == reflect.Uint8 {
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				d.add()
			}
			return
		}
		if a.Len() != b.Len() {
			d.add()
			return
		}
		for i := 0; i < a.Len(); i++ {
			d.push("[" + strconv.Itoa(i) + "]")
			d.walk(a.Index(i), b.Index(i), depth+1)
			d.pop()
		}
	default:
		if !a.Equal(b) {
			d.add()
		}
	}
}

// skipMeta drops fields that change on every write and say nothing.
func (d *differ) skipMeta(name string) bool {
	return len(d.segs) == 2 && d.segs[0] == ".metadata" && (name == "resourceVersion" || name == "managedFields")
}

func (d *differ) walkMap(a, b reflect.Value, depth int) {
	if a.Len() == 0 && b.Len() == 0 {
		return
	}
	keys := map[string]reflect.Value{}
	for _, k := range a.MapKeys() {
		keys[k.String()] = k
	}
	for _, k := range b.MapKeys() {
		keys[k.String()] = k
	}
	names := make([]string, 0, len(keys))
	for name := range keys {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		k := keys[name]
		av, bv := a.MapIndex(k), b.MapIndex(k)
		d.push(mapSegment(name))
		if !av.IsValid() || !bv.IsValid() {
			d.add()
		} else {
			d.walk(av, bv, depth+1)
		}
		d.pop()
	}
}

// mapSegment renders a map key as a path segment.
func mapSegment(key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return "." + key
	}
	return "[" + strconv.Quote(key) + "]"
}

type field struct {
	index int
	name  string // JSON name; empty for inlined structs
}

var fieldCache sync.Map // reflect.Type -> []field

// structFields lists the exported, serialized fields of t with JSON names.
func structFields(t reflect.Type) []field {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]field)
	}
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" && (strings.Contains(opts, "inline") || f.Anonymous) {
			out = append(out, field{index: i})
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, field{index: i, name: name})
	}
	fieldCache.Store(t, out)
	return out
}
