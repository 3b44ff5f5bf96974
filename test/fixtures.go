package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ReadManifests reads every object of a multi-document YAML file under
// test/fixtures as unstructured data, so the API server, not Go types, decides
// what the fields mean.
func ReadManifests(name string) ([]*unstructured.Unstructured, error) {
	path := filepath.Join(Root, "test", "fixtures", name)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// InvalidManifest is a manifest the API server must reject, with the field path
// and message text the rejection must contain.
type InvalidManifest struct {
	File    string
	Field   string
	Message string
	Object  *unstructured.Unstructured
}

// ReadInvalidManifests reads test/fixtures/invalid/*.yaml. Each file starts with
// "# field: <path>" and "# message: <text>" lines.
func ReadInvalidManifests() ([]InvalidManifest, error) {
	files, err := filepath.Glob(filepath.Join(Root, "test", "fixtures", "invalid", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []InvalidManifest
	for _, file := range files {
		rel, _ := filepath.Rel(filepath.Join(Root, "test", "fixtures"), file)
		m := InvalidManifest{File: rel}
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		scanner := bufio.NewScanner(f)
		for scanner.Scan() {
			line := scanner.Text()
			if v, ok := strings.CutPrefix(line, "# field: "); ok {
				m.Field = v
			} else if v, ok := strings.CutPrefix(line, "# message: "); ok {
				m.Message = v
			}
		}
		_ = f.Close()
		if m.Field == "" || m.Message == "" {
			return nil, fmt.Errorf("%s: needs '# field:' and '# message:' header lines", rel)
		}
		objs, err := ReadManifests(rel)
		if err != nil {
			return nil, err
		}
		if len(objs) != 1 {
			return nil, fmt.Errorf("%s: holds %d objects, want exactly 1", rel, len(objs))
		}
		m.Object = objs[0]
		out = append(out, m)
	}
	return out, nil
}
