package nodeboot

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	nodeadm "github.com/awslabs/amazon-eks-ami/nodeadm/api/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/bootstrap"
)

// bootstrapShOptions are the options /etc/eks/bootstrap.sh reads, each with
// a value in the next word; any other word (--name=value too) is positional,
// and the first positional word is the cluster's name.
var bootstrapShOptions = map[string]bool{
	"--use-max-pods": true, "--b64-cluster-ca": true, "--apiserver-endpoint": true, "--kubelet-extra-args": true,
	"--enable-docker-bridge": true, "--aws-api-retry-attempts": true, "--docker-config-json": true, "--containerd-config-file": true,
	"--pause-container-account": true, "--pause-container-version": true, "--dns-cluster-ip": true, "--container-runtime": true,
	"--ip-family": true, "--service-ipv6-cidr": true, "--enable-local-outpost": true, "--cluster-id": true,
	"--mount-bpf-fs": true, "--local-disks": true,
}

// kubeletDefaultMaxPods is the kubelet's own maxPods, which an AL2 node
// registers with when bootstrap.sh is told not to set it (--use-max-pods
// false) and no --max-pods flag is given.
const kubeletDefaultMaxPods = 110

// ReadAL2 decodes an Amazon Linux 2 node's user data as cloud-init and
// /etc/eks/bootstrap.sh read it: the shell-script parts of the MIME archive
// (or the script itself), the one call of /etc/eks/bootstrap.sh, its words
// as bash splits them, its options and the kubelet flags in
// --kubelet-extra-args, and says in NodeConfig terms what the kubelet would
// register with. A NodeConfig part is not read (AL2 has no nodeadm).
func ReadAL2(userData string) (*Config, error) {
	parts, isMIME, err := bootstrap.Parts(userData)
	if err != nil {
		return nil, err
	}
	var scripts []string
	if !isMIME {
		if !strings.HasPrefix(userData, "#!") {
			return nil, errors.New("user data is neither a MIME archive nor a script: cloud-init runs nothing of it")
		}
		scripts = append(scripts, userData)
	}
	for _, p := range parts {
		if strings.HasPrefix(p.ContentType, "text/x-shellscript") {
			scripts = append(scripts, string(p.Body))
		}
	}
	var calls [][]string
	for _, s := range scripts {
		// A backslash before a newline continues the line.
		// Only the call is read; the rest of a script is the user's.
		for _, line := range strings.Split(strings.ReplaceAll(s, "\\\n", " "), "\n") {
			if first, _, _ := strings.Cut(strings.TrimSpace(line), " "); first != "/etc/eks/bootstrap.sh" {
				continue
			}
			words, err := bashWords(line)
			if err != nil {
				return nil, fmt.Errorf("the bootstrap.sh call %q: %w", strings.TrimSpace(line), err)
			}
			calls = append(calls, words[1:])
		}
	}
	switch len(calls) {
	case 0:
		return nil, errors.New("no script part calls /etc/eks/bootstrap.sh: the node never joins")
	case 1:
	default:
		return nil, fmt.Errorf("/etc/eks/bootstrap.sh is called %d times; this reader reads one call", len(calls))
	}
	options, positional := map[string]string{}, []string(nil)
	for args := calls[0]; len(args) > 0; {
		if bootstrapShOptions[args[0]] {
			if len(args) < 2 {
				return nil, fmt.Errorf("bootstrap.sh option %s has no value", args[0])
			}
			options[args[0]], args = args[1], args[2:]
			continue
		}
		positional, args = append(positional, args[0]), args[1:]
	}
	if len(positional) == 0 {
		return nil, errors.New("bootstrap.sh is called without the cluster's name")
	}
	if options["--apiserver-endpoint"] == "" || options["--b64-cluster-ca"] == "" {
		return nil, errors.New("bootstrap.sh is called without --apiserver-endpoint and --b64-cluster-ca: it would ask EKS, which this node agent cannot")
	}
	ca, err := base64.StdEncoding.DecodeString(options["--b64-cluster-ca"])
	if err != nil {
		return nil, fmt.Errorf("--b64-cluster-ca is not base64: %w", err)
	}
	out := &Config{Scripts: scripts}
	out.Spec.Cluster = nodeadm.ClusterDetails{Name: positional[0], APIServerEndpoint: options["--apiserver-endpoint"], CertificateAuthority: ca}
	if err := kubeletFlags(out, options["--kubelet-extra-args"]); err != nil {
		return nil, fmt.Errorf("--kubelet-extra-args: %w", err)
	}
	useMaxPods := options["--use-max-pods"]
	if useMaxPods != "" && useMaxPods != "true" && useMaxPods != "false" {
		return nil, fmt.Errorf("--use-max-pods %q is neither true nor false", useMaxPods)
	}
	if _, set := out.Spec.Kubelet.Config["maxPods"]; useMaxPods == "false" && !set {
		// bootstrap.sh leaves maxPods out of the kubelet's config: its default.
		raw, _ := json.Marshal(kubeletDefaultMaxPods)
		out.Spec.Kubelet.Config["maxPods"] = runtime.RawExtension{Raw: raw}
	}
	return out, nil
}

// bashWords splits a line into words as bash does for a simple command:
// whitespace separates, single quotes keep everything, double quotes keep
// all but \" \\ \$ \`, a backslash outside quotes escapes the next
// character, and # starts a comment. Expansions ($, `) are refused: this
// reader does not run the script.
func bashWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	some := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			if some {
				words = append(words, cur.String())
				cur.Reset()
				some = false
			}
		case c == '#' && !some:
			return words, nil
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("a single quote is never closed")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			some = true
		case c == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				switch {
				case line[j] == '\\' && j+1 < len(line) && strings.IndexByte("\"\\$`", line[j+1]) >= 0:
					j++
					cur.WriteByte(line[j])
				case line[j] == '$' || line[j] == '`':
					return nil, errors.New("an expansion inside double quotes, which this reader does not run")
				default:
					cur.WriteByte(line[j])
				}
			}
			if j >= len(line) {
				return nil, errors.New("a double quote is never closed")
			}
			i = j
			some = true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			some = true
		case c == '$' || c == '`':
			return nil, errors.New("an expansion, which this reader does not run")
		default:
			cur.WriteByte(c)
			some = true
		}
	}
	if some {
		words = append(words, cur.String())
	}
	return words, nil
}
