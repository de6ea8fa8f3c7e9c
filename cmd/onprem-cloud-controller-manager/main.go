// Command onprem-cloud-controller-manager is the stock cloud-controller-manager with the
// onprem provider: --cloud-provider=onprem --cloud-config=<pool file>, and every standard flag.
package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
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
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"

	poolconfig "github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/provider"
)

func main() {
	// SIGTERM and SIGINT stop the command gracefully, and the leader lease is given up.
	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		klog.InfoS("Stopping", "signal", sig)
		close(stop)
	}()
	lease := &leaseReleaser{}
	code := cli.Run(newCommand(stop, lease))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := lease.release(ctx); err != nil {
		klog.ErrorS(err, "The next leader waits for the lease to expire")
	}
	klog.Flush()
	os.Exit(code)
}

// newCommand is the stock command with the onprem provider and its service controller, which
// checks the pool file before anything connects to the API server, and runs until stop is
// closed. lease learns when the process leads.
func newCommand(stop <-chan struct{}, lease *leaseReleaser) *cobra.Command {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		klog.Fatalf("unable to initialize command options: %v", err)
	}
	controllers := maps.Clone(app.DefaultInitFuncConstructors)
	controllers[names.ServiceLBController] = app.ControllerInitFuncConstructor{
		InitContext: app.ControllerInitContext{ClientName: "service-controller"}, Constructor: serviceController(lease)}
	cmd := app.NewCloudControllerManagerCommand(opts, newCloud, controllers,
		names.CCMControllerAliases(), cliflag.NamedFlagSets{}, stop)
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !cmd.Flags().Changed("version") {
			if err := checkCloudConfig(opts.KubeCloudShared.CloudProvider); err != nil {
				return err
			}
		}
		return run(cmd, args)
	}
	return cmd
}

// checkCloudConfig reports a wrong --cloud-provider or a bad pool file, naming the file,
// field and reason.
func checkCloudConfig(o *options.CloudProviderOptions) error {
	if o.Name != provider.ProviderName {
		return fmt.Errorf("--cloud-provider=%q: this binary only runs --cloud-provider=%s", o.Name, provider.ProviderName)
	}
	if _, err := poolconfig.Load(o.CloudConfigFile); err != nil {
		return fmt.Errorf("--cloud-config: %w", err)
	}
	return nil
}

// serviceController runs the provider's own service controller in place of the stock one,
// with --concurrent-service-syncs workers: it is the only writer of the status of the
// Services it serves. Controllers start once the process leads: lease learns it then.
func serviceController(lease *leaseReleaser) app.InitFuncConstructor {
	return func(_ app.ControllerInitContext, c *config.CompletedConfig, cloud cloudprovider.Interface) app.InitFunc {
		return func(ctx context.Context, _ genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
			if le := c.ComponentConfig.Generic.LeaderElection; le.LeaderElect {
				if err := lease.leading(c.ClientBuilder.ClientOrDie("onprem-leader-lease"), le.ResourceNamespace, le.ResourceName); err != nil {
					return nil, false, err
				}
			}
			cloud.(*provider.Cloud).RunServiceController(ctx, int(c.ComponentConfig.ServiceController.ConcurrentServiceSyncs))
			return nil, true, nil
		}
	}
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
