package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	if pu, ok := prev.(*unstructured.Unstructured); ok {
		if nu, ok := next.(*unstructured.Unstructured); ok {
			prev, next = withoutVolatileMetadata(pu.Object), withoutVolatileMetadata(nu.Object)
		}
	}
	a, b := reflect.ValueOf(prev), reflect.ValueOf(next)
	if !a.IsValid() || !b.IsValid() || a.Type() != b.Type() {
		return nil
	}
	d := differ{}
	d.walk(a, b, 0)
	return d.paths
}

// withoutVolatileMetadata returns a shallow copy of an unstructured object
// without metadata.resourceVersion and metadata.managedFields, as typed
// objects are compared.
func withoutVolatileMetadata(obj map[string]any) map[string]any {
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return obj
	}
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	m := make(map[string]any, len(meta))
	for k, v := range meta {
		if k != "resourceVersion" && k != "managedFields" {
			m[k] = v
		}
	}
	out["metadata"] = m
	return out
}

type differ struct {
	segs  []segment
	paths []string
}

// segment is one step of the path being walked. Paths are rendered only for
// fields that differ, so walking equal fields costs no string building.
type segment struct {
	field string // ".name" of a struct field
	key   string // map key, when isKey
	index int    // slice index, when isIndex
	isKey bool
	isIdx bool
}

var (
	timeType     = reflect.TypeOf(metav1.Time{})
	microType    = reflect.TypeOf(metav1.MicroTime{})
	quantityType = reflect.TypeOf(resource.Quantity{})
)

func (d *differ) add() {
	if len(d.paths) >= MaxChangedPaths {
		return
	}
	var b strings.Builder
	for _, s := range d.segs {
		switch {
		case s.isKey:
			b.WriteString(mapSegment(s.key))
		case s.isIdx:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		default:
			b.WriteString(s.field)
		}
	}
	d.paths = append(d.paths, strings.TrimPrefix(b.String(), "."))
}

func (d *differ) pop() { d.segs = d.segs[:len(d.segs)-1] }

func (d *differ) walk(a, b reflect.Value, depth int) {
	if len(d.paths) >= MaxChangedPaths {
		return
	}
	switch a.Type() {
	case timeType:
		if !timeValue(a).Equal(timeValue(b)) {
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
		if quantityValue(a).Cmp(*quantityValue(b)) != 0 {
			d.add()
		}
		return
	}
	// Types with a JSON form of their own (IntOrString, Duration, ...) are
	// one value in JSON: their Go fields are not paths.
	if a.Kind() == reflect.Struct && marshalsItself(a.Type()) {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
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
			if depth == 1 && f.skip {
				continue
			}
			if f.seg == "" {
				d.walk(a.Field(f.index), b.Field(f.index), depth+1)
				continue
			}
			d.segs = append(d.segs, segment{field: f.seg})
			d.walk(a.Field(f.index), b.Field(f.index), depth+1)
			d.pop()
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
			d.segs = append(d.segs, segment{index: i, isIdx: true})
			d.walk(a.Index(i), b.Index(i), depth+1)
			d.pop()
		}
	default:
		if !a.Equal(b) {
			d.add()
		}
	}
}

var (
	jsonMarshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	marshalsCache     sync.Map // reflect.Type -> bool
)

// marshalsItself reports whether a struct type has its own MarshalJSON.
func marshalsItself(t reflect.Type) bool {
	if v, ok := marshalsCache.Load(t); ok {
		return v.(bool)
	}
	m := t.Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(jsonMarshalerType)
	marshalsCache.Store(t, m)
	return m
}

// timeValue and quantityValue read without copying into an interface when
// the value is addressable (it is, unless it sits in a map).
func timeValue(v reflect.Value) *metav1.Time {
	if v.CanAddr() {
		return v.Addr().Interface().(*metav1.Time)
	}
	t := v.Interface().(metav1.Time)
	return &t
}

func quantityValue(v reflect.Value) *resource.Quantity {
	if v.CanAddr() {
		return v.Addr().Interface().(*resource.Quantity)
	}
	q := v.Interface().(resource.Quantity)
	return &q
}

func (d *differ) walkMap(a, b reflect.Value, depth int) {
	if a.Len() == 0 && b.Len() == 0 {
		return
	}
	// The common maps, compared without reflection: labels, annotations,
	// data, and resource lists.
	if a.Type() == stringMapType {
		d.stringMap(a.Interface().(map[string]string), b.Interface().(map[string]string))
		return
	}
	if a.Type() == resourceListType {
		d.resourceList(a.Interface().(corev1.ResourceList), b.Interface().(corev1.ResourceList))
		return
	}
	if a.Type().Key().Kind() != reflect.String {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			d.add()
		}
		return
	}
	keys := make([]reflect.Value, 0, a.Len()+b.Len())
	for it := a.MapRange(); it.Next(); {
		keys = append(keys, it.Key())
	}
	for it := b.MapRange(); it.Next(); {
		if !a.MapIndex(it.Key()).IsValid() {
			keys = append(keys, it.Key())
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		av, bv := a.MapIndex(k), b.MapIndex(k)
		d.segs = append(d.segs, segment{key: k.String(), isKey: true})
		if !av.IsValid() || !bv.IsValid() {
			d.add()
		} else {
			d.walk(av, bv, depth+1)
		}
		d.pop()
	}
}

var (
	stringMapType    = reflect.TypeOf(map[string]string(nil))
	resourceListType = reflect.TypeOf(corev1.ResourceList(nil))
)

// stringMap adds a path per key whose value differs, in key order.
func (d *differ) stringMap(a, b map[string]string) {
	var changed []string
	for k, av := range a {
		if bv, ok := b[k]; !ok || av != bv {
			changed = append(changed, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			changed = append(changed, k)
		}
	}
	d.addKeys(changed)
}

func (d *differ) resourceList(a, b corev1.ResourceList) {
	var changed []string
	for k, av := range a {
		if bv, ok := b[k]; !ok || av.Cmp(bv) != 0 {
			changed = append(changed, string(k))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			changed = append(changed, string(k))
		}
	}
	d.addKeys(changed)
}

func (d *differ) addKeys(keys []string) {
	sort.Strings(keys)
	for _, k := range keys {
		d.segs = append(d.segs, segment{key: k, isKey: true})
		d.add()
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
	seg   string // ".jsonName"; empty for inlined structs
	// skip marks fields that change on every write and say nothing, when
	// they sit in metadata: resourceVersion and managedFields.
	skip bool
}

var fieldCache sync.Map // reflect.Type -> []field

// structFields lists the exported, serialized fields of t with JSON names.
func structFields(t reflect.Type) []field {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]field)
	}
	isMeta := t == reflect.TypeOf(metav1.ObjectMeta{})
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
		skip := isMeta && (name == "resourceVersion" || name == "managedFields")
		out = append(out, field{index: i, seg: "." + name, skip: skip})
	}
	fieldCache.Store(t, out)
	return out
}
