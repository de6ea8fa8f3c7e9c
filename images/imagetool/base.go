package main

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type baseOptions struct {
	root, layout, name, user string
	env                      []string
	labels                   map[string]string
	epoch                    time.Time
}

// buildBase builds the image, adds it to the layout unless it is there already, and returns
// the reference by digest that ko resolves from its cache ($KOCACHE/img) without a registry.
func buildBase(o baseOptions) (string, error) {
	ref, err := name.ParseReference(o.name)
	if err != nil {
		return "", fmt.Errorf("base: -name: %w", err)
	}
	img, err := baseImage(o)
	if err != nil {
		return "", fmt.Errorf("base %s: %w", o.name, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	if err := addOnce(o.layout, img, digest, o.name); err != nil {
		return "", fmt.Errorf("base %s: layout %s: %w", o.name, o.layout, err)
	}
	return ref.Context().Digest(digest.String()).String(), nil
}

func baseImage(o baseOptions) (v1.Image, error) {
	var buf bytes.Buffer
	if err := writeTree(&buf, o.root, o.epoch); err != nil {
		return nil, err
	}
	tarBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: o.epoch}, CreatedBy: "imagetool base " + o.name},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: o.epoch}
	cfg.Config.User = o.user
	cfg.Config.Env = o.env
	cfg.Config.Labels = o.labels
	return mutate.ConfigFile(img, cfg)
}

// addOnce appends img to the layout at dir (creating it) unless an image of that digest is
// in it already.
func addOnce(dir string, img v1.Image, digest v1.Hash, ref string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	found, err := partial.FindManifests(idx, match.Digests(digest))
	if err != nil || len(found) > 0 {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}
