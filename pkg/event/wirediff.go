package event

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kubestream/kubestream/pkg/change"
)

// ChangedPathsWire is ChangedPaths of two protobuf Compacts of one kind,
// computed on their encodings: both are walked field by field, fields whose
// bytes are equal are skipped undecoded, and only differing sub-messages are
// entered. Values the reflection differ compares as a whole (times,
// quantities, IntOrString) and encodings this walk does not expect are
// decoded where they sit and handed to that differ, so the paths are always
// those of ChangedPaths on the decoded objects.
//
// ok is false when the walk cannot give that answer (JSON states, different
// types, a type holding floats, bytes that do not parse); the caller then
// decodes both states and calls ChangedPaths.
func ChangedPathsWire(prev, next *change.Compact) (paths []string, ok bool) {
	t := prev.ProtoType()
	if t == nil || t != next.ProtoType() {
		return nil, false
	}
	m := wireSchema(t)
	if m == nil {
		return nil, false
	}
	w := wireDiffers.Get().(*wireDiffer)
	defer w.release()
	if err := w.walkMsg(m, prev.Bytes(), next.Bytes(), 0); err != nil {
		return nil, false
	}
	return w.paths, true
}

// wireDiffers keeps the scratch of walks: an update otherwise allocates
// more for its span index than for its paths.
var wireDiffers = sync.Pool{New: func() any {
	return &wireDiffer{spans: make([]span, 0, 64), differ: differ{segs: make([]segment, 0, 16)}}
}}

func (w *wireDiffer) release() {
	if cap(w.spans) > 4096 { // a huge object's index is not kept
		return
	}
	w.paths, w.segs, w.spans = nil, w.segs[:0], w.spans[:0]
	wireDiffers.Put(w)
}

// shape is how a struct field sits in its message's encoding.
type shape uint8

const (
	shapeNone   shape = iota // not encoded: zero on both sides once decoded
	shapeSingle              // one value; absent reads as the zero value
	shapePtr                 // one value or none (nil)
	shapeList                // one occurrence per element
	shapeMap                 // one entry message per key: key 1, value 2
	shapeDecode              // unexpected here: decode the message, walk by reflection
)

// valKind is what one value (a field's, an element's, a map value) is.
type valKind uint8

const (
	valScalar  valKind = iota // string, bool or integer
	valBytes                  // []byte
	valMessage                // struct walked field by field
	valOpaque                 // compared whole by the differ: decoded on a difference
)

type wireVal struct {
	kind valKind
	wire protowire.Type // expected wire type of the value
	// goKind and bits say how a varint scalar reads in Go.
	goKind reflect.Kind
	bits   int
	t      reflect.Type // struct type of messages and opaque values
	msg    *wireMsg
}

type wireField struct {
	field
	num   protowire.Number
	shape shape
	val   wireVal
}

// wireMsg is the schema of one struct type: its serialized fields in Go
// order, the order ChangedPaths lists them in.
type wireMsg struct {
	t      reflect.Type
	fields []wireField
}

var (
	unmarshalerType = reflect.TypeOf((*interface{ Unmarshal([]byte) error })(nil)).Elem()
	wireSchemas     sync.Map // reflect.Type (pointer) -> *wireMsg, nil if unsupported
	wireBuildMu     sync.Mutex
	wireMsgs        = map[reflect.Type]*wireMsg{} // struct type -> schema; under wireBuildMu
)

// wireSchema returns the schema of the struct behind pointer type t, built
// once; nil when the wire walk cannot match the differ for the type.
func wireSchema(t reflect.Type) *wireMsg {
	if v, ok := wireSchemas.Load(t); ok {
		return v.(*wireMsg)
	}
	var m *wireMsg
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && t.Implements(unmarshalerType) &&
		!holdsFloat(t, map[reflect.Type]bool{}) {
		wireBuildMu.Lock()
		m = buildWireMsg(t.Elem())
		wireBuildMu.Unlock()
	}
	wireSchemas.Store(t, m)
	return m
}

// holdsFloat reports whether t can hold a float: equal NaN bytes are skipped
// here while the differ reports NaN as changed, so such types are left to it.
func holdsFloat(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return holdsFloat(t.Elem(), seen)
	case reflect.Map:
		return holdsFloat(t.Key(), seen) || holdsFloat(t.Elem(), seen)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if holdsFloat(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// buildWireMsg builds the schema of struct type t; recursive types share
// the schema under construction. Called with wireBuildMu held.
func buildWireMsg(t reflect.Type) *wireMsg {
	if m := wireMsgs[t]; m != nil {
		return m
	}
	m := &wireMsg{t: t}
	wireMsgs[t] = m
	for _, f := range structFields(t) {
		m.fields = append(m.fields, buildWireField(f, t.Field(f.index)))
	}
	return m
}

func buildWireField(f field, sf reflect.StructField) wireField {
	wf := wireField{field: f, shape: shapeDecode}
	tag := sf.Tag.Get("protobuf")
	if tag == "" {
		wf.shape = shapeNone
		return wf
	}
	// Only the field number is read from the tag: its wire type and
	// opt/rep do not always match what the generated code writes (int32
	// fields tagged bytes, lists tagged opt). The Go type says, and the
	// occurrences' wire types are checked as they are walked.
	num, ok := protoFieldNum(tag)
	ft := sf.Type
	if !ok || ft.Kind() != reflect.Struct && reflect.PointerTo(ft).Implements(unmarshalerType) {
		return wf // a non-struct type with an encoding of its own
	}
	wf.num = num
	switch {
	case ft.Kind() == reflect.Map:
		// Entries are messages of key 1 and value 2.
		k, kok := wireValue(ft.Key())
		v, vok := wireValue(ft.Elem())
		if kok && vok && ft.Key().Kind() == reflect.String && k.kind == valScalar {
			wf.shape, wf.val = shapeMap, v
		}
	case ft.Kind() == reflect.Pointer:
		if v, ok := wireValue(ft.Elem()); ok {
			wf.shape, wf.val = shapePtr, v
		}
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.Uint8:
		if v, ok := wireValue(ft.Elem()); ok {
			wf.shape, wf.val = shapeList, v
		}
	default:
		if v, ok := wireValue(ft); ok {
			wf.shape, wf.val = shapeSingle, v
		}
	}
	return wf
}

// protoFieldNum reads the field number of `protobuf:"bytes,1,opt,name=metadata"`.
func protoFieldNum(tag string) (protowire.Number, bool) {
	parts := strings.Split(tag, ",")
	if len(parts) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n <= 0 {
		return 0, false
	}
	return protowire.Number(n), true
}

// wireValue describes a value of type t, false for types this walk leaves
// to decoding (pointers and slices inside values, non-struct types with an
// encoding of their own, interfaces).
func wireValue(t reflect.Type) (wireVal, bool) {
	if t.Kind() != reflect.Struct && reflect.PointerTo(t).Implements(unmarshalerType) {
		return wireVal{}, false
	}
	switch t.Kind() {
	case reflect.String:
		return wireVal{kind: valScalar, wire: protowire.BytesType, goKind: t.Kind()}, true
	case reflect.Bool:
		return wireVal{kind: valScalar, wire: protowire.VarintType, goKind: t.Kind()}, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return wireVal{kind: valScalar, wire: protowire.VarintType, goKind: t.Kind(), bits: t.Bits()}, true
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return wireVal{kind: valBytes, wire: protowire.BytesType}, true
		}
	case reflect.Struct:
		if !reflect.PointerTo(t).Implements(unmarshalerType) {
			return wireVal{}, false
		}
		if t == timeType || t == microType || t == quantityType || marshalsItself(t) {
			return wireVal{kind: valOpaque, wire: protowire.BytesType, t: t}, true
		}
		return wireVal{kind: valMessage, wire: protowire.BytesType, t: t, msg: buildWireMsg(t)}, true
	}
	return wireVal{}, false
}

// span is one field occurrence in an encoding: b[start:end] is the whole
// field, b[val:end] its value (a varint, or a length-delimited payload).
type span struct {
	num             protowire.Number
	typ             protowire.Type
	start, val, end int32
}

type wireDiffer struct {
	differ
	// spans is scratch for the field index of each message being walked,
	// used as a stack: a message's spans are dropped when it is done.
	spans []span
}

// lazyDecoded holds a message decoded on both sides, for fields walked by
// reflection; decoded at most once per message walk.
type lazyDecoded struct {
	a, b reflect.Value
	done bool
}

var errWire = errors.New("unexpected protobuf encoding")

// walkMsg is the differ's walk of two struct values of m's type at depth,
// on their encodings a and b.
func (w *wireDiffer) walkMsg(m *wireMsg, a, b []byte, depth int) error {
	if len(w.paths) >= MaxChangedPaths || bytes.Equal(a, b) {
		return nil
	}
	base := len(w.spans)
	defer func() { w.spans = w.spans[:base] }()
	as, err := w.index(a)
	if err != nil {
		return err
	}
	bs, err := w.index(b)
	if err != nil {
		return err
	}
	var dec lazyDecoded
	for i := range m.fields {
		f := &m.fields[i]
		if depth == 1 && f.skip || f.shape == shapeNone {
			continue
		}
		fa, fb := occurrences(as, f.num), occurrences(bs, f.num)
		if sameOccurrences(a, fa, b, fb) {
			continue
		}
		if f.seg != "" {
			w.segs = append(w.segs, segment{field: f.seg})
		}
		err := w.walkField(m, f, a, fa, b, fb, depth+1, &dec)
		if f.seg != "" {
			w.pop()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// walkField walks one field whose occurrences differ, at the depth of its
// value.
func (w *wireDiffer) walkField(m *wireMsg, f *wireField, a []byte, fa []span, b []byte, fb []span, depth int, dec *lazyDecoded) error {
	if f.shape != shapeDecode && f.shape != shapeMap && (!wireTypes(fa, f.val.wire) || !wireTypes(fb, f.val.wire)) {
		return w.decodeField(m, f, a, b, depth, dec)
	}
	switch f.shape {
	case shapeSingle, shapePtr:
		if len(fa) > 1 || len(fb) > 1 { // merged or overwritten on decode
			return w.decodeField(m, f, a, b, depth, dec)
		}
		if f.shape == shapePtr && len(fa) != len(fb) {
			w.add()
			return nil
		}
		return w.walkValue(&f.val, value(a, fa), value(b, fb), depth)
	case shapeList:
		if len(fa) != len(fb) {
			w.add()
			return nil
		}
		for i := range fa {
			ea, eb := a[fa[i].val:fa[i].end], b[fb[i].val:fb[i].end]
			if bytes.Equal(ea, eb) {
				continue
			}
			w.segs = append(w.segs, segment{index: i, isIdx: true})
			err := w.walkValue(&f.val, ea, eb, depth+1)
			w.pop()
			if err != nil {
				return err
			}
		}
		return nil
	case shapeMap:
		if !sortedEntries(a, fa, f.val.wire) || !sortedEntries(b, fb, f.val.wire) {
			return w.decodeField(m, f, a, b, depth, dec)
		}
		return w.walkMap(&f.val, a, fa, b, fb, depth)
	}
	return w.decodeField(m, f, a, b, depth, dec)
}

// walkMap is walkMap of the differ on map entries, whose keys the encoder
// sorted: merging both entry lists visits the keys in the differ's order.
func (w *wireDiffer) walkMap(v *wireVal, a []byte, fa []span, b []byte, fb []span, depth int) error {
	i, j := 0, 0
	for i < len(fa) || j < len(fb) {
		var ka, va, kb, vb []byte
		if i < len(fa) {
			ka, va, _ = mapEntry(a[fa[i].val:fa[i].end], v.wire)
		}
		if j < len(fb) {
			kb, vb, _ = mapEntry(b[fb[j].val:fb[j].end], v.wire)
		}
		c := 0
		switch {
		case i == len(fa):
			c = 1
		case j == len(fb):
			c = -1
		default:
			c = bytes.Compare(ka, kb)
		}
		switch {
		case c < 0:
			w.addKey(ka)
			i++
		case c > 0:
			w.addKey(kb)
			j++
		default:
			i, j = i+1, j+1
			if bytes.Equal(va, vb) {
				continue
			}
			w.segs = append(w.segs, segment{key: string(ka), isKey: true})
			err := w.walkValue(v, va, vb, depth+1)
			w.pop()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *wireDiffer) addKey(k []byte) {
	w.segs = append(w.segs, segment{key: string(k), isKey: true})
	w.add()
	w.pop()
}

// walkValue is the differ's walk of two values of v's kind at depth;
// absent values (nil) read as the zero value, as they decode.
func (w *wireDiffer) walkValue(v *wireVal, a, b []byte, depth int) error {
	switch v.kind {
	case valScalar:
		eq, err := scalarEqual(v, a, b)
		if err != nil {
			return err
		}
		if !eq {
			w.add()
		}
	case valBytes:
		if !bytes.Equal(a, b) {
			w.add()
		}
	case valMessage:
		return w.walkMsg(v.msg, a, b, depth)
	case valOpaque:
		if bytes.Equal(a, b) {
			return nil
		}
		da, err := decodeAs(v.t, a)
		if err != nil {
			return err
		}
		db, err := decodeAs(v.t, b)
		if err != nil {
			return err
		}
		w.walk(da, db, depth)
	}
	return nil
}

// decodeField walks field f of message m by reflection on the decoded
// message, for encodings the wire walk does not handle.
func (w *wireDiffer) decodeField(m *wireMsg, f *wireField, a, b []byte, depth int, dec *lazyDecoded) error {
	if !dec.done {
		var err error
		if dec.a, err = decodeAs(m.t, a); err != nil {
			return err
		}
		if dec.b, err = decodeAs(m.t, b); err != nil {
			return err
		}
		dec.done = true
	}
	w.walk(dec.a.Field(f.index), dec.b.Field(f.index), depth)
	return nil
}

// decodeAs decodes b as a value of type t with t's generated Unmarshal; the
// value is addressable, as the differ reads times and quantities in place.
func decodeAs(t reflect.Type, b []byte) (reflect.Value, error) {
	p := reflect.New(t)
	u, ok := p.Interface().(interface{ Unmarshal([]byte) error })
	if !ok {
		return reflect.Value{}, fmt.Errorf("%s has no protobuf decoding", t)
	}
	if err := u.Unmarshal(b); err != nil {
		return reflect.Value{}, fmt.Errorf("decode %s: %w", t, err)
	}
	return p.Elem(), nil
}

// scalarEqual compares two encoded scalars as their Go values: varints are
// truncated to the Go type's size as generated Unmarshal does.
func scalarEqual(v *wireVal, a, b []byte) (bool, error) {
	if v.wire == protowire.BytesType || bytes.Equal(a, b) {
		return bytes.Equal(a, b), nil
	}
	x, err := varint(a)
	if err != nil {
		return false, err
	}
	y, err := varint(b)
	if err != nil {
		return false, err
	}
	if v.goKind == reflect.Bool {
		return (x != 0) == (y != 0), nil
	}
	if v.bits < 64 {
		mask := uint64(1)<<v.bits - 1
		x, y = x&mask, y&mask
	}
	return x == y, nil
}

func varint(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	x, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, protowire.ParseError(n)
	}
	return x, nil
}

// index appends the field occurrences of message b to w.spans and returns
// them ordered by field number, occurrences of a field in encoding order.
func (w *wireDiffer) index(b []byte) ([]span, error) {
	if len(b) > math.MaxInt32 { // spans hold int32 offsets
		return nil, errWire
	}
	lo := len(w.spans)
	sorted := true
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		val, end := off+n, off+n+m
		if typ == protowire.BytesType {
			_, l := protowire.ConsumeVarint(b[val:])
			val += l
		}
		if len(w.spans) > lo && w.spans[len(w.spans)-1].num > num {
			sorted = false
		}
		w.spans = append(w.spans, span{num: num, typ: typ, start: int32(off), val: int32(val), end: int32(end)})
		off = end
	}
	s := w.spans[lo:]
	if !sorted { // Kubernetes encoders write fields in number order
		slices.SortStableFunc(s, func(x, y span) int { return int(x.num) - int(y.num) })
	}
	return s, nil
}

// occurrences returns the spans of field num in s, ordered by number.
func occurrences(s []span, num protowire.Number) []span {
	lo, hi := 0, len(s)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if s[mid].num < num {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	end := lo
	for end < len(s) && s[end].num == num {
		end++
	}
	return s[lo:end]
}

func sameOccurrences(a []byte, fa []span, b []byte, fb []span) bool {
	if len(fa) != len(fb) {
		return false
	}
	for i := range fa {
		if !bytes.Equal(a[fa[i].start:fa[i].end], b[fb[i].start:fb[i].end]) {
			return false
		}
	}
	return true
}

func wireTypes(s []span, want protowire.Type) bool {
	for _, sp := range s {
		if sp.typ != want {
			return false
		}
	}
	return true
}

// value returns the value of a single occurrence, nil when absent.
func value(b []byte, s []span) []byte {
	if len(s) == 0 {
		return nil
	}
	return b[s[0].val:s[0].end]
}

// mapEntry reads a map entry message: key field 1, value field 2; the last
// occurrence wins, as on decode. ok is false for other wire types.
func mapEntry(b []byte, valWire protowire.Type) (key, val []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, nil, false
		}
		v := b[n : n+m]
		if typ == protowire.BytesType {
			_, l := protowire.ConsumeVarint(v)
			v = v[l:]
		}
		switch {
		case num == 1 && typ == protowire.BytesType:
			key = v
		case num == 2 && typ == valWire:
			val = v
		case num == 1 || num == 2:
			return nil, nil, false
		}
		b = b[n+m:]
	}
	return key, val, true
}

// sortedEntries reports whether a map's entries parse and have strictly
// increasing keys, as the encoder writes them; anything else is decoded.
func sortedEntries(b []byte, s []span, valWire protowire.Type) bool {
	var prev []byte
	for i, sp := range s {
		if sp.typ != protowire.BytesType {
			return false
		}
		k, _, ok := mapEntry(b[sp.val:sp.end], valWire)
		if !ok || i > 0 && bytes.Compare(prev, k) >= 0 {
			return false
		}
		prev = k
	}
	return true
}
