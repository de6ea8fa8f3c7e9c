// Command lab brings the onprem-lb lab up and down (make lab, make lab-down).
//
//	lab up [--nodes 3] [--clients 1] [--no-kube-proxy]   start a lab that stays up
//	       [--kubelets [--images bin/images]]           with real nodes (kubelet, containerd)
//	lab demo [--images bin/images]                      with real nodes and onprem-lb installed
//	lab down                                            stop it and remove all it made
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labcli"
)

func main() {
	lab.RunHelper()
	fs := flag.NewFlagSet("lab", flag.ExitOnError)
	var o labcli.Options
	fs.IntVar(&o.Lab.Nodes, "nodes", 3, "node namespaces")
	fs.IntVar(&o.Lab.Clients, "clients", 1, "client namespaces")
	fs.BoolVar(&o.Lab.NoKubeProxy, "no-kube-proxy", false, "run the nodes without kube-proxy")
	fs.StringVar(&o.Lab.Dir, "dir", lab.DefaultDir, "directory for the lab's files")
	fs.StringVar(&o.Lab.BinDir, "bin-dir", os.Getenv(lab.EnvToolsBin), "control-plane binaries (test/tools/build.sh)")
	fs.BoolVar(&o.Lab.Kubelets, "kubelets", false, "real nodes: containerd and a kubelet in every node namespace")
	images := fs.String("images", "bin/images", "with --kubelets: the directory of the OCI image archives (*.tar) to import, the pause image among them")
	router := fs.Bool("router", false, "an upstream router (FRR: BGP with BFD, ECMP) between the LAN and a WAN with a client of its own")
	fs.BoolVar(&o.Demo, "demo", false, "deploy onprem-lb into the lab (what `lab demo` passes to its background process)")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lab up|demo|down [flags]")
		os.Exit(2)
	}
	fs.Parse(os.Args[2:])
	if os.Args[1] == "demo" || o.Demo {
		o.Lab.Kubelets = true // onprem-lb runs as pods, from our images
	}
	if *router {
		o.Lab.Router = &lab.RouterOptions{}
	}
	if o.Lab.Kubelets {
		o.Lab.Images, _ = filepath.Glob(filepath.Join(*images, "*.tar")) // the pattern is valid
	}
	o.Args = os.Args[2:]
	if err := labcli.Run(context.Background(), os.Args[1], o); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}
