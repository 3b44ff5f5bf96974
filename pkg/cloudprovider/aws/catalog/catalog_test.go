package catalog_test

import (
	"testing"

	"github.com/backstop-sh/backstop/pkg/cloudprovider/aws/catalog"
)

func TestCatalogLoads(t *testing.T) {
	types, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(types) != 1363 {
		t.Fatalf("catalog has %d instance types, want the 1,363 of the source data", len(types))
	}
	byName := map[string]catalog.InstanceType{}
	unpriced := 0
	for _, it := range types {
		if it.VCPU <= 0 || it.MemoryMiB <= 0 || it.MaxPodsENI <= 0 {
			t.Errorf("%s lacks a fact: %+v", it.Name, it)
		}
		// A few types (HPC and some accelerators) have no public on-demand price.
		if it.OnDemandPriceUSD["us-east-1"] <= 0 {
			unpriced++
		}
		byName[it.Name] = it
	}
	if unpriced > 20 {
		t.Errorf("%d instance types have no on-demand price; the data looks truncated", unpriced)
	}
	m5 := byName["m5.large"]
	if m5.VCPU != 2 || m5.MemoryMiB != 8192 || m5.Arch != "amd64" || m5.MaxPodsENI != 29 {
		t.Errorf("m5.large facts are off: %+v", m5)
	}
	if g := byName["p4d.24xlarge"].GPU; g == nil || g.Count != 8 || g.Manufacturer != "nvidia" {
		t.Errorf("p4d.24xlarge GPUs are off: %+v", g)
	}
	if a := byName["inf2.xlarge"].Accelerator; a == nil || a.Count != 1 || a.Manufacturer != "aws" || a.Name != "inferentia2" {
		t.Errorf("inf2.xlarge Neuron accelerator is off: %+v", a)
	}
	neuron := 0
	for _, it := range types {
		if it.Accelerator != nil {
			neuron++
		}
	}
	if neuron != 12 {
		t.Errorf("%d types have Neuron accelerators, want the 12 inf1, inf2, trn1, trn1n and trn2 types of the source data", neuron)
	}
}

func TestClockSpeedAndEncryptionInTransit(t *testing.T) {
	types, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]catalog.InstanceType{}
	unstated := 0
	for _, it := range types {
		byName[it.Name] = it
		if it.SustainedClockSpeedMHz == 0 {
			unstated++
		}
	}
	// EC2 states no sustained speed for ten of the oldest types (c1, m1, m2, t1) only.
	if unstated != 10 {
		t.Errorf("%d types lack a sustained clock speed, want the 10 EC2 states none for", unstated)
	}
	for name, want := range map[string]struct {
		mhz       int64
		encrypted bool
	}{"m5.large": {3100, false}, "m6i.large": {3500, true}, "c7g.large": {2600, true}, "t1.micro": {0, false}} {
		got := byName[name]
		if got.SustainedClockSpeedMHz != want.mhz || got.EncryptionInTransit != want.encrypted {
			t.Errorf("%s: sustained %d MHz, encryption in transit %v; want %d, %v", name, got.SustainedClockSpeedMHz, got.EncryptionInTransit, want.mhz, want.encrypted)
		}
	}
}
