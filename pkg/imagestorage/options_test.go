package imagestorage

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestOptionsFlagsAndValidate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"defaults", nil, nil},
		{"byte sizes in Kubernetes notation", []string{"--image-storage-warning-bytes=30Gi", "--image-storage-critical-bytes=40Gi", "--image-storage-warning-growth=5Gi", "--image-storage-critical-growth=20Gi"}, nil},
		{"negative limit", []string{"--image-storage-max-images=-1"}, []string{"--image-storage-max-images -1 is negative"}},
		{"warning above critical", []string{"--image-storage-warning-bytes=50Gi", "--image-storage-critical-bytes=40Gi"}, []string{"warning must come first"}},
		{"share out of range", []string{"--image-storage-critical-share=80"}, []string{"--image-storage-critical-share 80 is not a share"}},
		{"growth window too short", []string{"--image-storage-warning-growth=1Gi", "--image-storage-growth-window=10s"}, []string{"too short to measure growth"}},
		{"margin out of range", []string{"--image-storage-resolve-margin=1"}, []string{"--image-storage-resolve-margin 1 is out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			errs := o.Validate()
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %v, want %d", errs, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to say %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestBytesFlag(t *testing.T) {
	o := DefaultOptions()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--image-storage-critical-bytes=40Gi", "--image-storage-warning-growth=512Mi"}); err != nil {
		t.Fatal(err)
	}
	if o.CriticalBytes != 40*gi || o.WarningGrowth != float64(512<<20) || fs.Lookup("image-storage-critical-bytes").Value.String() != "40GiB" {
		t.Fatalf("parsed %+v", o)
	}
	if err := fs.Parse([]string{"--image-storage-warning-bytes=lots"}); err == nil || !strings.Contains(err.Error(), "not a byte size") {
		t.Fatalf("bad size accepted: %v", err)
	}
	if o.GrowthWindow != time.Hour || o.MaxImages != 50 || o.ResolveMargin != 0.05 {
		t.Fatalf("defaults %+v", o)
	}
}
