// Command imagetool makes the two things images/build.sh needs and ko does not: base images
// built from a directory tree without pulling anything, and OCI archive tarballs that carry
// their image name, so that `ctr images import` and `crane push` take them as they are.
//
//	imagetool base -root DIR -layout DIR -name REF [-user UID] [-env K=V]... [-label K=V]...
//	    builds a one-layer image from DIR, adds it to the OCI layout (once) and prints
//	    REF's repository @ the image's digest, the reference ko takes as its base image.
//	imagetool archive -layout DIR -name REF -o FILE
//	    writes the one image of the layout to FILE as an OCI archive naming it REF.
//
// Both are reproducible: file times are SOURCE_DATE_EPOCH (default 0), owners root, entries
// sorted, so the same inputs give the same digests.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: imagetool base|archive [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "base":
		err = runBase(os.Args[2:])
	case "archive":
		err = runArchive(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want base or archive", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagetool:", err)
		os.Exit(1)
	}
}

func runBase(args []string) error {
	fs := flag.NewFlagSet("base", flag.ExitOnError)
	var o baseOptions
	var env, labels listFlag
	fs.StringVar(&o.root, "root", "", "directory tree that becomes the image's only layer")
	fs.StringVar(&o.layout, "layout", "", "OCI layout to add the image to (created if missing)")
	fs.StringVar(&o.name, "name", "", "image reference, e.g. onprem-lb.local/base-static:1")
	fs.StringVar(&o.user, "user", "", "the user the image runs as (config.User)")
	fs.Var(&env, "env", "K=V for the image's environment (repeatable)")
	fs.Var(&labels, "label", "K=V label (repeatable)")
	_ = fs.Parse(args)
	if o.root == "" || o.layout == "" || o.name == "" {
		return fmt.Errorf("base: -root, -layout and -name are required")
	}
	var err error
	if o.labels, err = labels.pairs(); err != nil {
		return err
	}
	o.env = env
	if o.epoch, err = sourceDateEpoch(); err != nil {
		return err
	}
	ref, err := buildBase(o)
	if err != nil {
		return err
	}
	fmt.Println(ref)
	return nil
}

func runArchive(args []string) error {
	fs := flag.NewFlagSet("archive", flag.ExitOnError)
	layoutDir := fs.String("layout", "", "OCI layout holding exactly one image (ko's --oci-layout-path)")
	name := fs.String("name", "", "the image's name in the archive, e.g. ghcr.io/onprem-lb/onprem-speaker:v1")
	out := fs.String("o", "", "the OCI archive tarball to write")
	_ = fs.Parse(args)
	if *layoutDir == "" || *name == "" || *out == "" {
		return fmt.Errorf("archive: -layout, -name and -o are required")
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	return writeArchive(*layoutDir, *name, *out, epoch)
}

// sourceDateEpoch is the time every file and the image config carry.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970: %w", s, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (l listFlag) pairs() (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range l {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}
