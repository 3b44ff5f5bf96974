package aws

import (
	"io"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// HTTPClient is the SDK's default HTTP client with one repair: request bodies
// reach net/http as plain readers.
//
// smithy-go wraps a request body so that, once closed, its WriteTo answers
// io.EOF as an error. net/http may close the body when the response arrives
// while its writer is still making the final read that checks the body held
// no more than its Content-Length; through WriteTo that read fails, and the
// transport drops the connection under the response being read. The SDK then
// sends the call again: a second CreateFleet, or a page read twice. A plain
// reader answers (0, io.EOF) after close, which io.Copy takes as the end.
func HTTPClient() *http.Client {
	return &http.Client{Transport: plainBodies{awshttp.NewBuildableClient().GetTransport()}}
}

type plainBodies struct{ next http.RoundTripper }

func (p plainBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		if _, ok := req.Body.(io.WriterTo); ok {
			req = req.Clone(req.Context())
			req.Body = readCloser{req.Body}
		}
	}
	return p.next.RoundTrip(req)
}

// readCloser hides every method of the body but Read and Close.
type readCloser struct{ io.ReadCloser }
