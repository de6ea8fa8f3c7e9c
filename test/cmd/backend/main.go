// Command backend is the lab's backend image: package backend, named after its pod
// (POD_NAMESPACE/POD_NAME, from the downward API).
package main

import (
	"fmt"
	"os"

	"github.com/onprem-lb/onprem-lb/test/backend"
)

func main() {
	err := backend.Serve(os.Getenv("POD_NAMESPACE") + "/" + os.Getenv("POD_NAME"))
	fmt.Fprintln(os.Stderr, "backend:", err)
	os.Exit(1)
}
