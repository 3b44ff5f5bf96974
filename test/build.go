package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildController builds cmd/controller into dir and returns the binary's
// path, so a suite can run Backstop as users do: as its own process, built
// as ko.yaml builds the image (static, no cgo, stripped).
func BuildController(dir string) (string, error) {
	binary := filepath.Join(dir, "controller")
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, "./cmd/controller")
	build.Dir = Root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the controller: %w: %s", err, out)
	}
	return binary, nil
}
