package imagestorage

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
)

// Defaults. The share thresholds are of the node's ephemeral-storage
// capacity, which images share with logs and emptyDir volumes: the kubelet
// starts image garbage collection when the whole image filesystem reaches
// 85% (imageGCHighThresholdPercent), so images alone at 80% leave no room.
const (
	DefaultMaxImages     = 50
	DefaultWarningShare  = 0.6
	DefaultCriticalShare = 0.8
	DefaultResolveMargin = 0.05
	DefaultGrowthWindow  = time.Hour
)

// Options configure the Tracker. A zero threshold turns its check off.
type Options struct {
	// Enabled derives image-storage events from node changes.
	Enabled bool
	// MaxImages is the kubelet's --node-status-max-images: a list of this
	// many images is flagged as a lower bound. 0 assumes no limit.
	MaxImages int
	// Absolute thresholds on the sum of image sizes, in bytes.
	WarningBytes, CriticalBytes int64
	// Thresholds on image bytes as a share of ephemeral-storage capacity
	// (0..1). Nodes that do not report the capacity are not judged by share.
	WarningShare, CriticalShare float64
	// Thresholds on growth in bytes per hour over GrowthWindow.
	WarningGrowth, CriticalGrowth float64
	GrowthWindow                  time.Duration
	// ResolveMargin is the hysteresis: a severity is left only when every
	// measure is below its threshold * (1 - ResolveMargin).
	ResolveMargin float64
	// Now is the clock for changes without ObservedAt. Default time.Now.
	Now func() time.Time
}

// DefaultOptions returns the defaults the flags show.
func DefaultOptions() Options {
	return Options{
		Enabled:       true,
		MaxImages:     DefaultMaxImages,
		WarningShare:  DefaultWarningShare,
		CriticalShare: DefaultCriticalShare,
		GrowthWindow:  DefaultGrowthWindow,
		ResolveMargin: DefaultResolveMargin,
	}
}

// AddFlags adds the --image-storage-* flags, bound to o. Call it on options
// holding the defaults (DefaultOptions).
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "image-storage", o.Enabled, "derive image-storage events (topic/subject <prefix>.imagestorage) from node.status.images when nodes are watched")
	fs.IntVar(&o.MaxImages, "image-storage-max-images", o.MaxImages, "the kubelet's --node-status-max-images: a node reporting this many images gets its totals flagged as a lower bound; 0 assumes no limit")
	fs.Var(bytesValue{i: &o.WarningBytes}, "image-storage-warning-bytes", "WARNING when a node's image bytes reach this, e.g. 30Gi; 0 disables")
	fs.Var(bytesValue{i: &o.CriticalBytes}, "image-storage-critical-bytes", "CRITICAL when a node's image bytes reach this, e.g. 40Gi; 0 disables")
	fs.Float64Var(&o.WarningShare, "image-storage-warning-share", o.WarningShare, "WARNING when image bytes reach this share (0..1) of the node's ephemeral-storage capacity; 0 disables")
	fs.Float64Var(&o.CriticalShare, "image-storage-critical-share", o.CriticalShare, "CRITICAL when image bytes reach this share (0..1) of the node's ephemeral-storage capacity; 0 disables")
	fs.Var(bytesValue{f: &o.WarningGrowth}, "image-storage-warning-growth", "WARNING when image bytes grow by this much per hour over --image-storage-growth-window, e.g. 5Gi; 0 disables")
	fs.Var(bytesValue{f: &o.CriticalGrowth}, "image-storage-critical-growth", "CRITICAL when image bytes grow by this much per hour over --image-storage-growth-window, e.g. 20Gi; 0 disables")
	fs.DurationVar(&o.GrowthWindow, "image-storage-growth-window", o.GrowthWindow, "window the growth rate is measured over: growth = (bytes now - bytes one window ago) per hour")
	fs.Float64Var(&o.ResolveMargin, "image-storage-resolve-margin", o.ResolveMargin, "hysteresis (0..1): a severity ends only when every measure is below its threshold minus this share of it, so a node hovering at a threshold does not flap")
}

// Validate reports every problem with one clear message each.
func (o *Options) Validate() []error {
	var errs []error
	if o.MaxImages < 0 {
		errs = append(errs, fmt.Errorf("--image-storage-max-images %d is negative: give the kubelet's --node-status-max-images (default 50), or 0 when the kubelet reports all images", o.MaxImages))
	}
	if o.WarningBytes < 0 || o.CriticalBytes < 0 {
		errs = append(errs, fmt.Errorf("--image-storage-warning-bytes and --image-storage-critical-bytes must not be negative (0 disables)"))
	}
	if o.WarningBytes > 0 && o.CriticalBytes > 0 && o.WarningBytes > o.CriticalBytes {
		errs = append(errs, fmt.Errorf("--image-storage-warning-bytes %s is above --image-storage-critical-bytes %s: warning must come first", FormatBytes(o.WarningBytes), FormatBytes(o.CriticalBytes)))
	}
	for _, s := range []struct {
		flag string
		v    float64
	}{{"--image-storage-warning-share", o.WarningShare}, {"--image-storage-critical-share", o.CriticalShare}} {
		if math.IsNaN(s.v) || s.v < 0 || s.v > 1 {
			errs = append(errs, fmt.Errorf("%s %v is not a share: give a number from 0 to 1, e.g. 0.8 for 80%% (0 disables)", s.flag, s.v))
		}
	}
	if o.WarningShare > 0 && o.CriticalShare > 0 && o.WarningShare > o.CriticalShare {
		errs = append(errs, fmt.Errorf("--image-storage-warning-share %v is above --image-storage-critical-share %v: warning must come first", o.WarningShare, o.CriticalShare))
	}
	if o.WarningGrowth < 0 || o.CriticalGrowth < 0 {
		errs = append(errs, fmt.Errorf("--image-storage-warning-growth and --image-storage-critical-growth must not be negative (0 disables)"))
	}
	if o.WarningGrowth > 0 && o.CriticalGrowth > 0 && o.WarningGrowth > o.CriticalGrowth {
		errs = append(errs, fmt.Errorf("--image-storage-warning-growth %s/h is above --image-storage-critical-growth %s/h: warning must come first", FormatBytes(int64(o.WarningGrowth)), FormatBytes(int64(o.CriticalGrowth))))
	}
	if (o.WarningGrowth > 0 || o.CriticalGrowth > 0) && o.GrowthWindow < time.Minute {
		errs = append(errs, fmt.Errorf("--image-storage-growth-window %s is too short to measure growth: use at least 1m (default %s)", o.GrowthWindow, DefaultGrowthWindow))
	}
	if math.IsNaN(o.ResolveMargin) || o.ResolveMargin < 0 || o.ResolveMargin >= 1 {
		errs = append(errs, fmt.Errorf("--image-storage-resolve-margin %v is out of range: give a share from 0 (no hysteresis) to below 1, e.g. 0.05 for 5%%", o.ResolveMargin))
	}
	return errs
}

// thresholds is what events carry.
func (o *Options) thresholds() *kubestreamv1.ImageStorageThresholds {
	return &kubestreamv1.ImageStorageThresholds{
		WarningBytes:               o.WarningBytes,
		CriticalBytes:              o.CriticalBytes,
		WarningShare:               o.WarningShare,
		CriticalShare:              o.CriticalShare,
		WarningGrowthBytesPerHour:  o.WarningGrowth,
		CriticalGrowthBytesPerHour: o.CriticalGrowth,
		GrowthWindowSeconds:        int64(o.GrowthWindow / time.Second),
		ResolveMargin:              o.ResolveMargin,
	}
}

// bytesValue is a flag of a byte size in Kubernetes notation ("40Gi",
// "500M", "1073741824"), stored in an int64 or a float64.
type bytesValue struct {
	i *int64
	f *float64
}

func (b bytesValue) String() string {
	var v int64
	switch {
	case b.i != nil:
		v = *b.i
	case b.f != nil:
		v = int64(*b.f)
	}
	if v == 0 {
		return "0"
	}
	return FormatBytes(v)
}

func (b bytesValue) Set(s string) error {
	q, err := resource.ParseQuantity(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a byte size: write it like 40Gi, 500Mi or 1073741824", s)
	}
	v := q.Value()
	if v < 0 {
		return fmt.Errorf("%q is negative: give a size, or 0 to disable", s)
	}
	if b.i != nil {
		*b.i = v
	}
	if b.f != nil {
		*b.f = float64(v)
	}
	return nil
}

func (b bytesValue) Type() string { return "bytes" }

// FormatBytes renders a size in binary units with one decimal: "41.2GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	neg := n < 0
	if neg {
		n = -n
	}
	sign := ""
	if neg {
		sign = "-"
	}
	if n < unit {
		return fmt.Sprintf("%s%dB", sign, n)
	}
	v := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		if v < unit || u == "PiB" {
			s := fmt.Sprintf("%.1f", v)
			s = strings.TrimSuffix(s, ".0")
			return sign + s + u
		}
	}
	return fmt.Sprintf("%s%dB", sign, n)
}
