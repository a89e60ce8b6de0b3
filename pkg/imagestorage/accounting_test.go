package imagestorage

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

const gi = int64(1) << 30

func img(size int64, names ...string) corev1.ContainerImage {
	return corev1.ContainerImage{Names: names, SizeBytes: size}
}

func node(name string, capacity, allocatable string, images ...corev1.ContainerImage) *corev1.Node {
	n := &corev1.Node{}
	n.Name, n.UID, n.ResourceVersion = name, types.UID("uid-"+name), "1"
	n.Status.Images = images
	if capacity != "" {
		n.Status.Capacity = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(capacity)}
	}
	if allocatable != "" {
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(allocatable)}
	}
	return n
}

func TestAccount(t *testing.T) {
	three := []corev1.ContainerImage{img(3*gi, "a"), img(1*gi, "b"), img(2*gi, "c")}
	tests := []struct {
		name          string
		node          *corev1.Node
		max           int
		wantBytes     int64
		wantCount     int32
		wantLower     bool
		wantCap       int64
		wantAlloc     int64
		wantShare     float64
		wantTopFirsts string
	}{
		{"sums sizes and reads ephemeral storage", node("n", "12Gi", "10Gi", three...), 50, 6 * gi, 3, false, 12 * gi, 10 * gi, 0.5, "a,c,b"},
		{"list at the limit is a lower bound", node("n", "12Gi", "", three...), 3, 6 * gi, 3, true, 12 * gi, 0, 0.5, "a,c,b"},
		{"limit 0 assumes no limit", node("n", "", "", three...), 0, 6 * gi, 3, false, 0, 0, 0, "a,c,b"},
		{"missing capacity gives share 0", node("n", "", "", three...), 50, 6 * gi, 3, false, 0, 0, 0, "a,c,b"},
		{"no images", node("n", "1Gi", "1Gi"), 50, 0, 0, false, gi, gi, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Account(tt.node, tt.max)
			if a.TotalBytes != tt.wantBytes || a.ImageCount != tt.wantCount || a.LowerBound != tt.wantLower ||
				a.CapacityBytes != tt.wantCap || a.AllocatableBytes != tt.wantAlloc || a.Share() != tt.wantShare {
				t.Fatalf("got %+v share %v", a, a.Share())
			}
			var firsts []string
			for _, i := range a.Top(TopImages) {
				firsts = append(firsts, i.Names[0])
			}
			if got := strings.Join(firsts, ","); got != tt.wantTopFirsts {
				t.Fatalf("top = %q, want %q", got, tt.wantTopFirsts)
			}
		})
	}
}

func TestTopIsBounded(t *testing.T) {
	var imgs []corev1.ContainerImage
	for i := range 9 {
		imgs = append(imgs, img(int64(i), fmt.Sprintf("i%d", i)))
	}
	top := Account(node("n", "", "", imgs...), 0).Top(TopImages)
	if len(top) != TopImages || top[0].Names[0] != "i8" || top[4].Names[0] != "i4" {
		t.Fatalf("top = %v", top)
	}
}

func render(d Diff) string {
	var parts []string
	for _, i := range d.Added {
		parts = append(parts, fmt.Sprintf("+%s=%d", strings.Join(i.Names, "|"), i.SizeBytes))
	}
	for _, i := range d.Removed {
		parts = append(parts, fmt.Sprintf("-%s=%d", strings.Join(i.Names, "|"), i.SizeBytes))
	}
	for _, r := range d.Resized {
		s := fmt.Sprintf("~%s=%d->%d", strings.Join(r.Names, "|"), r.PreviousSizeBytes, r.SizeBytes)
		if len(r.PreviousNames) > 0 {
			s += " was " + strings.Join(r.PreviousNames, "|")
		}
		parts = append(parts, s)
	}
	if d.Renamed > 0 {
		parts = append(parts, fmt.Sprintf("renamed=%d", d.Renamed))
	}
	return strings.Join(parts, " ")
}

func TestDiffImages(t *testing.T) {
	const (
		appOld  = "reg/app@sha256:0001"
		appNew  = "reg/app@sha256:0002"
		appV1   = "reg/app:v1"
		appV2   = "reg/app:v2"
		appLast = "reg/app:latest"
	)
	tests := []struct {
		name          string
		before, after []corev1.ContainerImage
		want          string
	}{
		{"nothing changed", []corev1.ContainerImage{img(5, appOld, appV1)}, []corev1.ContainerImage{img(5, appOld, appV1)}, ""},
		{"order does not matter", []corev1.ContainerImage{img(5, "a"), img(6, "b")}, []corev1.ContainerImage{img(6, "b"), img(5, "a")}, ""},
		{"added", nil, []corev1.ContainerImage{img(7, "b"), img(5, "a")}, "+a=5 +b=7"},
		{"removed", []corev1.ContainerImage{img(5, "a"), img(6, "b")}, []corev1.ContainerImage{img(6, "b")}, "-a=5"},
		{"resized with the same names", []corev1.ContainerImage{img(5, appOld, appV1)}, []corev1.ContainerImage{img(9, appOld, appV1)}, "~" + appOld + "|" + appV1 + "=5->9"},
		{"renamed: a new tag on the same digest changes no storage", []corev1.ContainerImage{img(5, appOld, appV1)}, []corev1.ContainerImage{img(5, appOld, appV1, appV2)}, "renamed=1"},
		{"renamed and resized", []corev1.ContainerImage{img(5, appOld, appV1)}, []corev1.ContainerImage{img(6, appOld, appV2)}, "~" + appOld + "|" + appV2 + "=5->6 was " + appOld + "|" + appV1},
		{"tag moved to new content: old removed, new added", []corev1.ContainerImage{img(5, appOld, appLast)}, []corev1.ContainerImage{img(6, appNew, appLast)}, "+" + appNew + "|" + appLast + "=6 -" + appOld + "|" + appLast + "=5"},
		{"tag moved, old content kept untagged: rename plus add", []corev1.ContainerImage{img(5, appOld, appLast)}, []corev1.ContainerImage{img(6, appNew, appLast), img(5, appOld)}, "+" + appNew + "|" + appLast + "=6 renamed=1"},
		{"locally built image without digest matches by tag", []corev1.ContainerImage{img(5, "local/app:dev")}, []corev1.ContainerImage{img(8, "local/app:dev")}, "~local/app:dev=5->8"},
		{"digest appears on a tag-only image", []corev1.ContainerImage{img(5, "local/app:dev")}, []corev1.ContainerImage{img(5, appOld, "local/app:dev")}, "renamed=1"},
		{"unnamed images match by size", []corev1.ContainerImage{img(5), img(6)}, []corev1.ContainerImage{img(6), img(7)}, "+=7 -=5"},
		{"swap at equal total is still a change", []corev1.ContainerImage{img(5, "a")}, []corev1.ContainerImage{img(5, "b")}, "+b=5 -a=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := render(DiffImages(tt.before, tt.after)); got != tt.want {
				t.Fatalf("diff = %q\nwant   %q", got, tt.want)
			}
		})
	}
}

func TestDiffOfTruncatedLists(t *testing.T) {
	// The kubelet reports the largest images only: pulling a large image
	// pushes the smallest off the list although it is still on disk.
	before := []corev1.ContainerImage{img(9, "big"), img(5, "mid"), img(1, "small")}
	after := []corev1.ContainerImage{img(10, "huge"), img(9, "big"), img(5, "mid")}
	a := Account(node("n", "", "", after...), 3)
	if !a.LowerBound {
		t.Fatal("a full list was not flagged as a lower bound")
	}
	if got := render(DiffImages(before, after)); got != "+huge=10 -small=1" {
		t.Fatalf("diff = %q", got)
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 41*gi + gi/5: "41.2GiB", -2 * gi: "-2GiB", 3 << 50: "3PiB"} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}
