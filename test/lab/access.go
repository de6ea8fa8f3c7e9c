package lab

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// Kubectl runs the lab's kubectl as admin and returns its output.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	return run(ctx, l.Bin("kubectl"), append([]string{"--kubeconfig", l.Kubeconfig}, args...)...)
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the ServiceAccount
// namespace/name with a token from the TokenRequest API, as a pod of that ServiceAccount
// would. Programs run with it get exactly the RBAC the ServiceAccount is granted.
func (l *Lab) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	tr, err := l.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("lab: token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	path := l.pki.path(fmt.Sprintf("sa-%s-%s.kubeconfig", namespace, name))
	return path, l.pki.kubeconfig(path, apiServer(), &clientcmdapi.AuthInfo{Token: tr.Status.Token})
}
