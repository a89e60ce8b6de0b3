package leader_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kubestream/kubestream/pkg/leader"
)

func TestValidateNamesTheFlags(t *testing.T) {
	ok := leader.Options{Namespace: "kubestream", Name: leader.DefaultName,
		LeaseDuration: leader.DefaultLeaseDuration, RenewDeadline: leader.DefaultRenewDeadline, RetryPeriod: leader.DefaultRetryPeriod}
	if errs := ok.Validate(); len(errs) != 0 {
		t.Fatalf("defaults rejected: %v", errs)
	}
	tests := []struct {
		name string
		mod  func(o *leader.Options)
		want string
	}{
		{"renew not shorter than the lease", func(o *leader.Options) { o.RenewDeadline = o.LeaseDuration }, "--leader-elect-lease-duration"},
		{"retry too long for the renew deadline", func(o *leader.Options) { o.RetryPeriod = 9 * time.Second }, "--leader-elect-renew-deadline"},
		{"no retry period", func(o *leader.Options) { o.RetryPeriod = 0 }, "--leader-elect-retry-period"},
		{"no lease name", func(o *leader.Options) { o.Name = "" }, "--leader-elect-resource-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			errs := o.Validate()
			if len(errs) == 0 || !strings.Contains(errs[0].Error(), tt.want) {
				t.Fatalf("errors %v, want one naming %s", errs, tt.want)
			}
		})
	}
}

func TestDefaultNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "payments")
	if got := leader.DefaultNamespace(); got != "payments" {
		t.Fatalf("DefaultNamespace = %q with POD_NAMESPACE=payments", got)
	}
}
