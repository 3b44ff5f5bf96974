package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/backstop-sh/backstop/test/dashboard"
)

// exposition serves whatever text it holds, as a metrics endpoint.
type exposition struct {
	mu   sync.Mutex
	text string
}

func (e *exposition) set(text string) { e.mu.Lock(); e.text = text; e.mu.Unlock() }

func (e *exposition) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = fmt.Fprint(w, e.text)
}

func nodes(spec ...string) string {
	var b strings.Builder
	b.WriteString("# TYPE karpenter_nodes_allocatable gauge\n")
	for _, s := range spec {
		name, ct, _ := strings.Cut(s, "=")
		fmt.Fprintf(&b, "karpenter_nodes_allocatable{node_name=%q,capacity_type=%q,resource_type=\"cpu\",nodepool=\"batch\",instance_type=\"c5.large\"} 2\n", name, ct)
	}
	return b.String()
}

const board = `{"title": "t", "templating": {"list": [
  {"name": "nodepool", "type": "query", "includeAll": true, "query": {"query": "label_values(karpenter_nodes_allocatable, nodepool)"}},
  {"name": "instance_type", "type": "query", "includeAll": true, "query": "label_values(karpenter_nodes_allocatable, instance_type)"}]},
 "panels": [
  {"title": "share", "targets": [
    {"expr": "count(karpenter_nodes_allocatable{capacity_type=\"spot\",nodepool=~\"$nodepool\"}) / count(karpenter_nodes_allocatable)", "legendFormat": "nodes"},
    {"expr": "sum(karpenter_nodes_allocatable{instance_type=~\"$instance_type\"}) / sum(karpenter_nodes_allocatable)", "legendFormat": "vCPUs"}]},
  {"title": "uptime", "targets": [
    {"expr": "sum(node_time_seconds)"},
    {"expr": "count by (node_name) (karpenter_nodes_allocatable)"}]},
  {"type": "row", "title": "more", "panels": [
    {"title": "missing", "targets": [{"expr": "sum(rate(karpenter_nodes_created_total[$__rate_interval]))"}]}]}
 ]}`

// scrapeAll scrapes each exposition once, 2 s apart, and returns the window.
func scrapeAll(t *testing.T, store *dashboard.Store, url string, exp *exposition, texts ...string) dashboard.Window {
	start := time.Now().Add(-time.Duration(len(texts)) * 2 * time.Second)
	for i, text := range texts {
		exp.set(text)
		if err := store.Scrape(context.Background(), url, map[string]string{"job": "karpenter"}, start.Add(time.Duration(i)*2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	return dashboard.Window{Start: start, End: start.Add(time.Duration(len(texts)-1) * 2 * time.Second), Step: 2 * time.Second, RateInterval: 10 * time.Second}
}

func setup(t *testing.T) (*dashboard.Store, *dashboard.Dashboard, *exposition, string) {
	exp := &exposition{}
	srv := httptest.NewServer(exp)
	t.Cleanup(srv.Close)
	store, err := dashboard.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	path := filepath.Join(t.TempDir(), "board.json")
	if err := os.WriteFile(path, []byte(board), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := dashboard.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return store, d, exp, srv.URL
}

func TestPanelSeriesEvaluatesEachQueryWithItsOwnValues(t *testing.T) {
	store, d, exp, url := setup(t)
	w := scrapeAll(t, store, url, exp, nodes("a=spot", "b=on-demand", "c=on-demand", "d=on-demand"),
		nodes("a=spot", "b=on-demand", "c=on-demand", "d=on-demand"))
	got, err := store.PanelSeries(context.Background(), d, "share", w)
	if err != nil {
		t.Fatal(err)
	}
	if n, v := got["nodes"], got["vCPUs"]; len(n.Floats) == 0 || n.Floats[len(n.Floats)-1].F != 0.25 || len(v.Floats) == 0 || v.Floats[0].F != 1 {
		t.Fatalf("want nodes 0.25 (1 of 4 on Spot) and vCPUs 1 (every vCPU is c5.large, the dot escaped), got %v", got)
	}
}

func TestASeriesGoneFromTheScrapeStopsCountingAtOnce(t *testing.T) {
	store, d, exp, url := setup(t)
	w := scrapeAll(t, store, url, exp, nodes("a=spot", "b=on-demand"), nodes("a=spot", "b=on-demand"), nodes("a=spot"), nodes("a=spot"))
	got, err := store.PanelSeries(context.Background(), d, "share", w)
	if err != nil {
		t.Fatal(err)
	}
	points := got["nodes"].Floats
	if last := points[len(points)-1].F; last != 1 {
		t.Fatalf("node b was deleted: the Spot share is 1, as Prometheus's staleness markers make it, not %v (%v)", last, points)
	}
}

func TestCheckReportsEmptyPanelsAndEmptyOwnedQueriesOnly(t *testing.T) {
	store, d, exp, url := setup(t)
	w := scrapeAll(t, store, url, exp, nodes("a=spot"), nodes("a=spot"))
	problems, err := store.Check(context.Background(), d, w, func(m string) bool { return !strings.HasPrefix(m, "node_") })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range problems {
		got = append(got, p.Panel+": "+p.Why)
	}
	want := []string{"missing: no data", "missing: the panel is empty"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("want only the panel without data (in a row) reported, node-exporter's query exempt; got %q", got)
	}
}
