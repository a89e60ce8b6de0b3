// Package imagestorage derives image-storage events from nodes: what the
// container images on a node add up to (node.status.images), what changed,
// and whether that crosses the alerting thresholds, with hysteresis so a
// node hovering at a threshold does not flap.
package imagestorage

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// TopImages is how many of the largest images an event lists.
const TopImages = 5

// Accounting is the image storage of one node at one point in time.
type Accounting struct {
	TotalBytes int64
	ImageCount int32
	// LowerBound is set when the image list is at the kubelet's reporting
	// limit: the node may hold more images than it reports.
	LowerBound bool
	// Ephemeral storage in bytes, zero when the node does not report it.
	CapacityBytes    int64
	AllocatableBytes int64
	// Images as the node reports them (shared with the node: never mutate).
	Images []corev1.ContainerImage
}

// Account measures a node. maxImages is the kubelet's reporting limit
// (--node-status-max-images); 0 means no limit is assumed.
func Account(n *corev1.Node, maxImages int) Accounting {
	a := Accounting{Images: n.Status.Images, ImageCount: int32(len(n.Status.Images))}
	for _, img := range n.Status.Images {
		a.TotalBytes += img.SizeBytes
	}
	a.LowerBound = maxImages > 0 && len(n.Status.Images) >= maxImages
	if q, ok := n.Status.Capacity[corev1.ResourceEphemeralStorage]; ok {
		a.CapacityBytes = q.Value()
	}
	if q, ok := n.Status.Allocatable[corev1.ResourceEphemeralStorage]; ok {
		a.AllocatableBytes = q.Value()
	}
	return a
}

// Share is TotalBytes as a share of ephemeral-storage capacity, 0 when the
// capacity is unknown.
func (a Accounting) Share() float64 {
	if a.CapacityBytes <= 0 {
		return 0
	}
	return float64(a.TotalBytes) / float64(a.CapacityBytes)
}

// Top returns the n largest images, largest first; ties by first name.
func (a Accounting) Top(n int) []*kubestreamv1.Image {
	// Insertion into a short list: n is small and the list is long.
	top := make([]int, 0, n+1)
	larger := func(i, j int) bool {
		x, y := a.Images[i], a.Images[j]
		if x.SizeBytes != y.SizeBytes {
			return x.SizeBytes > y.SizeBytes
		}
		return firstName(x.Names) < firstName(y.Names)
	}
	for i := range a.Images {
		pos := len(top)
		for pos > 0 && larger(i, top[pos-1]) {
			pos--
		}
		if pos >= n {
			continue
		}
		top = append(top, 0)
		copy(top[pos+1:], top[pos:])
		top[pos] = i
		if len(top) > n {
			top = top[:n]
		}
	}
	out := make([]*kubestreamv1.Image, len(top))
	for k, i := range top {
		out[k] = protoImage(a.Images[i])
	}
	return out
}

// Diff is what changed between two image lists of one node.
type Diff struct {
	Added   []*kubestreamv1.Image
	Removed []*kubestreamv1.Image
	Resized []*kubestreamv1.ImageResize
	// Renamed counts images whose names changed but whose size did not:
	// no storage changed, so they are not listed.
	Renamed int
}

// Empty reports whether no image was added, removed or resized.
func (d Diff) Empty() bool { return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Resized) == 0 }

// DiffImages compares two image lists.
//
// The node status has no image id, only names: repo digests
// ("registry/app@sha256:...") and tags ("registry/app:v1"). A digest names
// content, a tag is a movable pointer. So two reports are the same image when
// they share a digest name; when either has no digest (images built or
// loaded locally), when they share any name. A tag that moved to new content
// is therefore the old image removed and a new one added, while a new tag on
// the same digest is a rename. A same image with another size is reported as
// resized, not as removed and added, so added and removed only ever mean
// that content appeared or disappeared.
func DiffImages(before, after []corev1.ContainerImage) Diff {
	var d Diff
	matched := make([]bool, len(before))
	pair := make([]int, len(after))
	for i := range pair {
		pair[i] = -1
	}
	byName := make(map[string][]int, 2*len(before))
	for i, img := range before {
		for _, n := range img.Names {
			byName[n] = append(byName[n], i)
		}
	}
	find := func(img corev1.ContainerImage, ok func(j int) bool) int {
		for _, n := range img.Names {
			for _, j := range byName[n] {
				if !matched[j] && ok(j) {
					return j
				}
			}
		}
		return -1
	}
	// Pass 1: shared digest names.
	for i, img := range after {
		j := -1
		for _, n := range img.Names {
			if !isDigest(n) {
				continue
			}
			for _, k := range byName[n] {
				if !matched[k] {
					j = k
					break
				}
			}
			if j >= 0 {
				break
			}
		}
		if j >= 0 {
			matched[j], pair[i] = true, j
		}
	}
	// Pass 2: any shared name, unless both have digests (which then differ:
	// other content under a moved tag).
	for i, img := range after {
		if pair[i] >= 0 {
			continue
		}
		j := find(img, func(j int) bool { return !(hasDigest(img.Names) && hasDigest(before[j].Names)) })
		if j >= 0 {
			matched[j], pair[i] = true, j
		}
	}
	// Pass 3: images without names can only be told apart by size.
	for i, img := range after {
		if pair[i] >= 0 || len(img.Names) > 0 {
			continue
		}
		for j, b := range before {
			if !matched[j] && len(b.Names) == 0 && b.SizeBytes == img.SizeBytes {
				matched[j], pair[i] = true, j
				break
			}
		}
	}
	for i, img := range after {
		j := pair[i]
		if j < 0 {
			d.Added = append(d.Added, protoImage(img))
			continue
		}
		prev := before[j]
		sameNames := equalStrings(prev.Names, img.Names)
		switch {
		case prev.SizeBytes != img.SizeBytes:
			r := &kubestreamv1.ImageResize{Names: img.Names, SizeBytes: img.SizeBytes, PreviousSizeBytes: prev.SizeBytes}
			if !sameNames {
				r.PreviousNames = prev.Names
			}
			d.Resized = append(d.Resized, r)
		case !sameNames:
			d.Renamed++
		}
	}
	for j, img := range before {
		if !matched[j] {
			d.Removed = append(d.Removed, protoImage(img))
		}
	}
	sortImages(d.Added)
	sortImages(d.Removed)
	sort.SliceStable(d.Resized, func(i, j int) bool { return firstName(d.Resized[i].Names) < firstName(d.Resized[j].Names) })
	return d
}

func isDigest(name string) bool {
	return strings.Contains(name, "@sha256:") || strings.Contains(name, "@sha512:")
}

func hasDigest(names []string) bool {
	for _, n := range names {
		if isDigest(n) {
			return true
		}
	}
	return false
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

func protoImage(img corev1.ContainerImage) *kubestreamv1.Image {
	return &kubestreamv1.Image{Names: img.Names, SizeBytes: img.SizeBytes}
}

// sortImages orders by first name (the order change.Coalesce keeps), then
// size, so events are stable whatever order the kubelet reported.
func sortImages(imgs []*kubestreamv1.Image) {
	sort.SliceStable(imgs, func(i, j int) bool {
		a, b := firstName(imgs[i].Names), firstName(imgs[j].Names)
		if a != b {
			return a < b
		}
		return imgs[i].SizeBytes > imgs[j].SizeBytes
	})
}
