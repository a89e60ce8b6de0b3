package main

import (
	"errors"

	"github.com/spf13/pflag"

	"github.com/kubestream/kubestream/pkg/imagestorage"
	"github.com/kubestream/kubestream/pkg/kinds"
	"github.com/kubestream/kubestream/pkg/source"
)

// imageStorageOpts are the --image-storage-* settings of `run`.
var imageStorageOpts = imagestorage.DefaultOptions()

func init() {
	registerRunExtension(runExtension{
		addFlags: func(fs *pflag.FlagSet) {
			imageStorageOpts = imagestorage.DefaultOptions()
			imageStorageOpts.AddFlags(fs)
		},
		derivers: func() ([]source.Deriver, error) {
			if errs := imageStorageOpts.Validate(); len(errs) > 0 {
				return nil, errors.Join(errs...)
			}
			if !imageStorageOpts.Enabled {
				return nil, nil
			}
			return []source.Deriver{imagestorage.NewTracker(imageStorageOpts)}, nil
		},
		streams: func() []string { return []string{kinds.ImageStorage} },
	})
}
