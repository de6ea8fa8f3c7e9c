package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"etc", "tmp"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/:/sbin/nologin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("passwd", filepath.Join(root, "etc", "link")); err != nil {
		t.Fatal(err)
	}
	return root
}

// The same tree gives the same bytes whenever its files were written; modes and links survive.
func TestWriteTreeIsReproducible(t *testing.T) {
	epoch := time.Unix(1700000000, 0)
	root := tree(t)
	var a, b bytes.Buffer
	if err := writeTree(&a, root, epoch); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(root, "etc", "passwd"), later, later); err != nil {
		t.Fatal(err)
	}
	if err := writeTree(&b, root, epoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same tree gave two different tar streams")
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		got[h.Name] = h
	}
	if h := got["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v, want mode 01777", h)
	}
	if h := got["etc/link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "passwd" {
		t.Errorf("etc/link: %+v, want a symlink to passwd", h)
	}
	if h := got["etc/passwd"]; h == nil || !h.ModTime.Equal(epoch) || h.Uid != 0 {
		t.Errorf("etc/passwd: %+v, want time %v and owner root", h, epoch)
	}
}

// A base built twice has one digest and is added to the layout once.
func TestBuildBaseIsReproducible(t *testing.T) {
	o := baseOptions{root: tree(t), layout: filepath.Join(t.TempDir(), "img"), name: "onprem-lb.local/base-test:1", user: "65532", epoch: time.Unix(0, 0)}
	first, err := buildBase(o)
	if err != nil {
		t.Fatal(err)
	}
	second, err := buildBase(o)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Errorf("two builds: %s and %s", first, second)
	}
	index, err := os.ReadFile(filepath.Join(o.layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(index, []byte(`"digest"`)); n != 1 {
		t.Errorf("layout index lists %d images, want 1:\n%s", n, index)
	}
}
