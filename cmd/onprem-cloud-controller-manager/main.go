// Command onprem-cloud-controller-manager is the stock cloud-controller-manager with the
// onprem provider: --cloud-provider=onprem --cloud-config=<pool file>, and every standard flag.
package main

import (
	"os"

	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/provider"
)

func main() {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		klog.Fatalf("unable to initialize command options: %v", err)
	}
	cmd := app.NewCloudControllerManagerCommand(opts, newCloud, app.DefaultInitFuncConstructors,
		names.CCMControllerAliases(), cliflag.NamedFlagSets{}, wait.NeverStop)
	os.Exit(cli.Run(cmd))
}

// newCloud builds the onprem provider from --cloud-config; any other --cloud-provider, or a
// bad pool file, ends the process with the reason.
func newCloud(c *config.CompletedConfig) cloudprovider.Interface {
	shared := c.ComponentConfig.KubeCloudShared.CloudProvider
	if shared.Name != provider.ProviderName {
		klog.Fatalf("--cloud-provider=%q: this binary only runs --cloud-provider=%s", shared.Name, provider.ProviderName)
	}
	cloud, err := provider.New(shared.CloudConfigFile, legacyregistry.MustRegister)
	if err != nil {
		klog.Fatalf("--cloud-config: %v", err)
	}
	return cloud
}
