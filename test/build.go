package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildController builds cmd/controller into dir and returns the binary's
// path, so a suite can run Backstop as users do: as its own process.
func BuildController(dir string) (string, error) {
	binary := filepath.Join(dir, "controller")
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", binary, "./cmd/controller")
	build.Dir = Root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the controller: %w: %s", err, out)
	}
	return binary, nil
}
