package event_test

import (
	"math/rand"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/randfill"
)

// Random objects of every field, mutated anywhere by refilling random
// subtrees: where the hand-written mutations reach only the fields they
// name, this reaches every field number and type the schema maps.
func TestChangedPathsWireOnRandomObjects(t *testing.T) {
	for _, obj := range []runtime.Object{
		&corev1.Pod{}, &appsv1.Deployment{}, &corev1.ConfigMap{}, &corev1.Node{},
		&corev1.Service{}, &appsv1.StatefulSet{}, &batchv1.Job{}, &corev1.PersistentVolume{}, &networkingv1.Ingress{},
	} {
		t.Run(reflect.TypeOf(obj).Elem().Name(), func(t *testing.T) {
			r := rand.New(rand.NewSource(1))
			f := filler(r)
			for i := 0; i < 150; i++ {
				a := reflect.New(reflect.TypeOf(obj).Elem()).Interface().(runtime.Object)
				f.Fill(a)
				b := a.DeepCopyObject()
				for n := 0; n == 0; {
					n = refill(r, f, reflect.ValueOf(b).Elem(), 0.03)
				}
				assertWireMatches(t, a, b)
				assertWireMatches(t, b, a)
			}
		})
	}
}

// filler fills objects from small value sets, so that refilled values are
// often equal to the old ones, and with values that encode (quantities,
// times in seconds).
func filler(r *rand.Rand) *randfill.Filler {
	strs := []string{"", "a", "b", "a.b", "x/y"}
	return randfill.New().RandSource(r).NilChance(0.4).NumElements(0, 2).MaxDepth(12).Funcs(
		func(s *string, c randfill.Continue) { *s = strs[c.Intn(len(strs))] },
		func(i *int32, c randfill.Continue) { *i = int32(c.Intn(3)) },
		func(i *int64, c randfill.Continue) { *i = int64(c.Intn(3)) },
		func(q *resource.Quantity, c randfill.Continue) {
			*q = resource.MustParse(quantities[c.Intn(len(quantities))])
		},
		func(tm *metav1.Time, c randfill.Continue) {
			if s := times[c.Intn(len(times))]; s != 0 {
				*tm = metav1.NewTime(time.Unix(s, 0))
			} else {
				*tm = metav1.Time{}
			}
		},
		func(tm *metav1.MicroTime, c randfill.Continue) {
			*tm = metav1.NewMicroTime(time.Unix(times[c.Intn(len(times))], int64(c.Intn(2))*1000))
		},
		func(v *intstr.IntOrString, c randfill.Continue) {
			if c.Intn(2) == 0 {
				*v = intstr.FromInt32(int32(c.Intn(3)))
			} else {
				*v = intstr.FromString(strs[c.Intn(len(strs))])
			}
		},
		func(e *runtime.RawExtension, c randfill.Continue) {
			*e = runtime.RawExtension{Raw: []byte([]string{`{}`, `{"a":1}`}[c.Intn(2)])}
		},
	)
}

// refill replaces random settable subtrees of v with fresh random values,
// with probability p each, and says how many it replaced.
func refill(r *rand.Rand, f *randfill.Filler, v reflect.Value, p float64) int {
	if v.CanSet() && r.Float64() < p {
		nv := reflect.New(v.Type())
		f.Fill(nv.Interface())
		v.Set(nv.Elem())
		return 1
	}
	n := 0
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			n += refill(r, f, v.Elem(), p)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(resource.Quantity{}) || v.Type() == reflect.TypeOf(metav1.Time{}) {
			return 0 // unexported insides: replaced whole or not at all
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				n += refill(r, f, v.Field(i), p)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			n += refill(r, f, v.Index(i), p)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			if r.Float64() < p {
				nv := reflect.New(v.Type().Elem())
				f.Fill(nv.Interface())
				v.SetMapIndex(k, nv.Elem())
				n++
			}
		}
	}
	return n
}
