package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// writeArchive copies the one image of the layout at src into a fresh layout whose index names
// it ref (containerd reads io.containerd.image.name, the OCI spec's ref.name holds the tag) and
// writes that layout to out as a tarball, atomically.
func writeArchive(src, ref, out string, epoch time.Time) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("archive: -name: %w", err)
	}
	p, err := layout.FromPath(src)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsImage() {
		return fmt.Errorf("archive: layout %s holds %d entries, want one image", src, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dst, err := layout.Write(filepath.Join(tmp, "layout"), empty.Index)
	if err != nil {
		return err
	}
	if err := dst.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          tag.String(),
		"org.opencontainers.image.ref.name": tag.TagStr(),
	})); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	f, err := os.Create(filepath.Join(tmp, "archive.tar"))
	if err != nil {
		return err
	}
	if err := writeTree(f, filepath.Join(tmp, "layout"), epoch); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(filepath.Join(tmp, "archive.tar"), out)
}
