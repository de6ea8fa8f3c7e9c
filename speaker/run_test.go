package speaker

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	key16 := base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name     string
		path     string
		wantLens []int
		wantErr  string
	}{
		{"no file: no encryption", "", nil, ""},
		{"32 bytes, trailing newline as kubectl create secret --from-file leaves", write("ok", key32+"\n"), []int{32}, ""},
		{"16 bytes", write("16", key16), []int{16}, ""},
		{"keyring: the first encrypts", write("ring", "# rotation to the 16-byte key\n"+key32+"\n\n  "+key16+"  \n"), []int{32, 16}, ""},
		{"wrong length on line 2", write("short", key32+"\n"+base64.StdEncoding.EncodeToString(make([]byte, 10))), nil, "line 2: 10 bytes, want 16, 24 or 32"},
		{"not base64", write("bad", "not base64!"), nil, "line 1: not base64"},
		{"no key", write("empty", "# nothing yet\n\n"), nil, "no key in the file"},
		{"missing file", filepath.Join(dir, "nope"), nil, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := readKeys(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readKeys error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			var lens []int
			for _, k := range keys {
				lens = append(lens, len(k))
			}
			if diff := cmp.Diff(tt.wantLens, lens); err != nil || diff != "" {
				t.Fatalf("readKeys error %v, key lengths (-want +got):\n%s", err, diff)
			}
		})
	}
}
