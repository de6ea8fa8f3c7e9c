// Package images proves what `make images` builds: each OCI archive names its image, the
// programs run from the image's own files as the image's user, the speaker's image carries
// working iptables (both backends) and conntrack, and a rebuild gives the same digests.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Image is one image read from an OCI archive.
type Image struct {
	Name   string // io.containerd.image.name
	Digest string // of the manifest
	Config imageConfig
	blobs  map[string][]byte // by digest
	// layers are the digests of the layer blobs, in order.
	layers []string
}

// imageConfig is what the tests read of an image's configuration.
type imageConfig struct {
	User       string
	Env        []string
	Entrypoint []string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
}

// ReadArchive reads an OCI archive holding one image.
func ReadArchive(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
		}
	}
	var index struct{ Manifests []descriptor }
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", path, err)
	}
	if len(index.Manifests) != 1 {
		return nil, fmt.Errorf("%s: index.json lists %d manifests, want 1", path, len(index.Manifests))
	}
	img := &Image{Name: index.Manifests[0].Annotations["io.containerd.image.name"], Digest: index.Manifests[0].Digest, blobs: map[string][]byte{}}
	for name, b := range files {
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
			img.blobs["sha256:"+d] = b
		}
	}
	var manifest struct {
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(img.blobs[img.Digest], &manifest); err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", path, img.Digest, err)
	}
	var config struct {
		Config *imageConfig `json:"config"`
	}
	config.Config = &img.Config
	if err := json.Unmarshal(img.blobs[manifest.Config.Digest], &config); err != nil {
		return nil, fmt.Errorf("%s: config: %w", path, err)
	}
	for _, l := range manifest.Layers {
		if _, ok := img.blobs[l.Digest]; !ok {
			return nil, fmt.Errorf("%s: layer %s missing", path, l.Digest)
		}
		img.layers = append(img.layers, l.Digest)
	}
	return img, nil
}

// Unpack writes the image's file system into dir, its layers in order. The images here have
// no whiteouts; one is an error.
func (img *Image) Unpack(dir string) error {
	for _, l := range img.layers {
		if err := untar(img.blobs[l], dir); err != nil {
			return fmt.Errorf("layer %s: %w", l, err)
		}
	}
	return nil
}

func untar(gz []byte, dir string) error {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if strings.HasPrefix(filepath.Base(name), ".wh.") {
			return fmt.Errorf("%s: whiteouts are not supported", h.Name)
		}
		target := filepath.Join(dir, name)
		os.RemoveAll(target)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, target)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), target)
		case tar.TypeReg:
			err = writeFile(target, tr, os.FileMode(h.Mode))
		default:
			err = fmt.Errorf("%s: unsupported type %c", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(path string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode&os.ModePerm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, mode.Perm())
}
