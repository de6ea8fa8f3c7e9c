package speaker

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	tests := []struct {
		name    string
		path    string
		wantLen int
		wantErr string
	}{
		{"no file: no encryption", "", 0, ""},
		{"32 bytes, trailing newline as kubectl create secret --from-file leaves", write("ok", key32+"\n"), 32, ""},
		{"16 bytes", write("16", base64.StdEncoding.EncodeToString(make([]byte, 16))), 16, ""},
		{"wrong length", write("short", base64.StdEncoding.EncodeToString(make([]byte, 10))), 0, "10 bytes, want 16, 24 or 32"},
		{"not base64", write("bad", "not base64!"), 0, "not base64"},
		{"missing file", filepath.Join(dir, "nope"), 0, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := readKey(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readKey error %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(key) != tt.wantLen {
				t.Fatalf("readKey = %d bytes, %v; want %d bytes", len(key), err, tt.wantLen)
			}
		})
	}
}
