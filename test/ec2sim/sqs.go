package ec2sim

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The SQS half of the simulator speaks the AWS JSON 1.0 protocol the current
// SDK uses (POST /, X-Amz-Target: AmazonSQS.<Action>), for the actions an
// interruption queue needs. Queues live in the same account and region as
// the instances; the admin endpoints publish EC2's events into them.

type queue struct {
	name     string
	messages []*message
	// visibility is how long a received message stays hidden.
	visibility time.Duration
	// notify is closed and replaced whenever a message arrives.
	notify chan struct{}
}

type message struct {
	id       string
	body     string
	sent     time.Time
	hidden   time.Time // invisible until then
	handle   string
	received int
}

func newQueue(name string) *queue {
	return &queue{name: name, visibility: 30 * time.Second, notify: make(chan struct{})}
}

type sqsError struct {
	status int
	code   string // the JSON __type
	query  string // the query-compatible code, as x-amzn-query-error gives it
	msg    string
}

func (s *Server) queueURL(name string) string {
	return fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", s.cfg.Region, accountID, name)
}

// queueByURL finds a queue by its URL or its name; locked.
func (s *Server) queueByURL(url string) (*queue, *sqsError) {
	name := url[strings.LastIndex(url, "/")+1:]
	if q, ok := s.queues[name]; ok && url != "" {
		return q, nil
	}
	return nil, &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#QueueDoesNotExist",
		query: "AWS.SimpleQueueService.NonExistentQueue;Sender", msg: "The specified queue does not exist."}
}

// serveSQS answers one SQS call.
func (s *Server) serveSQS(w http.ResponseWriter, r *http.Request, action string) {
	var in map[string]json.RawMessage
	s.mu.Lock()
	s.sqsRequests++ // apart from EC2's count, which ThrottleEvery follows
	requestID := fmt.Sprintf("%08x-sqs-%d", s.sqsRequests, s.sqsRequests)
	s.mu.Unlock()
	reply := func(status int, v any) {
		w.Header().Set("X-Amzn-Requestid", requestID)
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(e *sqsError) {
		if e.query != "" {
			w.Header().Set("X-Amzn-Query-Error", e.query)
		}
		s.recordSQS(action, in, e.code)
		reply(e.status, map[string]string{"__type": e.code, "message": e.msg})
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.0" {
		fail(&sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#InvalidParameterValue", msg: "Content-Type must be application/x-amz-json-1.0, not " + ct})
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(&sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#InvalidParameterValue", msg: "malformed JSON: " + err.Error()})
		return
	}
	s.mu.Lock()
	throttle := s.cfg.Faults.SQSThrottleNext > 0
	if throttle {
		s.cfg.Faults.SQSThrottleNext--
	}
	denied := s.cfg.Faults.SQSAccessDenied
	queue := ""
	for _, k := range []string{"QueueUrl", "QueueName"} {
		if raw, ok := in[k]; ok && queue == "" {
			_ = json.Unmarshal(raw, &queue)
		}
	}
	refused := s.denied([]Authorization{{Action: "sqs:" + action, Resource: s.sqsQueueARN(queue), Context: s.context(nil, nil)}})
	s.mu.Unlock()
	switch {
	case refused != "":
		fail(&sqsError{status: http.StatusForbidden, code: "com.amazonaws.sqs#AccessDeniedException", query: "AccessDenied;Sender", msg: refused})
		return
	case throttle:
		fail(&sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#RequestThrottled", query: "RequestThrottled;Sender", msg: "Rate exceeded"})
		return
	case denied:
		fail(&sqsError{status: http.StatusForbidden, code: "com.amazonaws.sqs#AccessDeniedException", query: "AccessDenied;Sender",
			msg: "User: arn:aws:sts::" + accountID + ":assumed-role/backstop is not authorized to perform: sqs:" + action + " because no identity-based policy allows the sqs:" + action + " action"})
		return
	}
	str := func(k string) string {
		var v string
		_ = json.Unmarshal(in[k], &v)
		return v
	}
	num := func(k string, def int) int {
		var v int
		if raw, ok := in[k]; ok && json.Unmarshal(raw, &v) == nil {
			return v
		}
		return def
	}
	var out any
	var err *sqsError
	switch action {
	case "CreateQueue":
		out, err = s.createQueue(str("QueueName"))
	case "GetQueueUrl":
		s.mu.Lock()
		_, ok := s.queues[str("QueueName")]
		s.mu.Unlock()
		if !ok {
			_, err = s.queueByURL("")
		} else {
			out = map[string]string{"QueueUrl": s.queueURL(str("QueueName"))}
		}
	case "GetQueueAttributes":
		out, err = s.queueAttributes(str("QueueUrl"))
	case "SendMessage":
		out, err = s.sendMessage(str("QueueUrl"), str("MessageBody"))
	case "ReceiveMessage":
		max, wait := num("MaxNumberOfMessages", 1), num("WaitTimeSeconds", 0)
		if max < 1 || max > 10 {
			err = &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#InvalidParameterValue", query: "InvalidParameterValue;Sender",
				msg: fmt.Sprintf("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", max)}
		} else if wait < 0 || wait > 20 {
			err = &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#InvalidParameterValue", query: "InvalidParameterValue;Sender",
				msg: fmt.Sprintf("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", wait)}
		} else {
			out, err = s.receiveMessages(r, str("QueueUrl"), max, time.Duration(wait)*time.Second)
		}
	case "DeleteMessage":
		err = s.deleteMessage(str("QueueUrl"), str("ReceiptHandle"))
		out = map[string]string{}
	default:
		err = &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#UnsupportedOperation", query: "AWS.SimpleQueueService.UnsupportedOperation;Sender",
			msg: "the simulator does not serve " + action}
	}
	if err != nil {
		fail(err)
		return
	}
	s.recordSQS(action, in, "")
	reply(http.StatusOK, out)
}

func (s *Server) recordSQS(action string, in map[string]json.RawMessage, code string) {
	params := map[string]string{}
	for k, v := range in {
		params[k] = strings.Trim(string(v), `"`)
	}
	req := Request{Action: "sqs:" + action, Params: params, Time: s.clock.Now()}
	if code != "" {
		req.Error = code[strings.LastIndex(code, "#")+1:]
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
}

func (s *Server) createQueue(name string) (any, *sqsError) {
	if name == "" || len(name) > 80 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
		return nil, &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#InvalidParameterValue", query: "InvalidParameterValue;Sender",
			msg: "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"}
	}
	s.CreateQueue(name)
	return map[string]string{"QueueUrl": s.queueURL(name)}, nil
}

// CreateQueue makes a queue (a no-op if it exists) and returns its URL.
func (s *Server) CreateQueue(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queues[name] == nil {
		s.queues[name] = newQueue(name)
	}
	return s.queueURL(name)
}

func (s *Server) queueAttributes(url string) (any, *sqsError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queueByURL(url)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	visible, hidden := 0, 0
	for _, m := range q.messages {
		if now.Before(m.hidden) {
			hidden++
		} else {
			visible++
		}
	}
	return map[string]map[string]string{"Attributes": {
		"QueueArn":                              fmt.Sprintf("arn:aws:sqs:%s:%s:%s", s.cfg.Region, accountID, q.name),
		"ApproximateNumberOfMessages":           strconv.Itoa(visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(hidden),
		"VisibilityTimeout":                     strconv.Itoa(int(q.visibility / time.Second)),
		"MessageRetentionPeriod":                "300",
	}}, nil
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (s *Server) sendMessage(url, body string) (any, *sqsError) {
	if body == "" {
		return nil, &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#MissingParameter", query: "MissingParameter;Sender",
			msg: "The request must contain the parameter MessageBody."}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queueByURL(url)
	if err != nil {
		return nil, err
	}
	id := s.publishLocked(q, body)
	return map[string]string{"MessageId": id, "MD5OfMessageBody": md5Hex(body)}, nil
}

// publishLocked appends a message and wakes the long polls; locked.
func (s *Server) publishLocked(q *queue, body string) string {
	s.messageSeq++
	id := fmt.Sprintf("%08x-0000-4000-8000-%012x", s.messageSeq, s.messageSeq)
	q.messages = append(q.messages, &message{id: id, body: body, sent: s.clock.Now()})
	close(q.notify)
	q.notify = make(chan struct{})
	return id
}

// Publish puts a message on a queue as EventBridge would; it reports false
// if there is no such queue.
func (s *Server) Publish(queueName, body string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[queueName]
	if q == nil {
		return false
	}
	s.publishLocked(q, body)
	return true
}

// QueueDepth is how many messages a queue holds, visible or not.
func (s *Server) QueueDepth(queueName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[queueName]; q != nil {
		return len(q.messages)
	}
	return 0
}

type sqsMessage struct {
	MessageID     string            `json:"MessageId"`
	ReceiptHandle string            `json:"ReceiptHandle"`
	MD5OfBody     string            `json:"MD5OfBody"`
	Body          string            `json:"Body"`
	Attributes    map[string]string `json:"Attributes,omitempty"`
}

// receiveMessages long-polls: it answers as soon as a message is visible, or
// empty when the wait is up or the caller goes away.
func (s *Server) receiveMessages(r *http.Request, url string, max int, wait time.Duration) (any, *sqsError) {
	deadline := s.clock.Now().Add(wait)
	for {
		s.mu.Lock()
		s.settle()
		q, err := s.queueByURL(url)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		now := s.clock.Now()
		var out []sqsMessage
		for _, m := range q.messages {
			if len(out) == max {
				break
			}
			if now.Before(m.hidden) {
				continue
			}
			m.received++
			s.messageSeq++
			m.handle = fmt.Sprintf("%s#%d", m.id, s.messageSeq)
			m.hidden = now.Add(q.visibility)
			out = append(out, sqsMessage{MessageID: m.id, ReceiptHandle: m.handle, MD5OfBody: md5Hex(m.body), Body: m.body,
				Attributes: map[string]string{"SentTimestamp": strconv.FormatInt(m.sent.UnixMilli(), 10), "ApproximateReceiveCount": strconv.Itoa(m.received)}})
		}
		notify := q.notify
		next := s.nextChangeLocked(q)
		s.mu.Unlock()
		if len(out) > 0 || !now.Before(deadline) {
			return map[string][]sqsMessage{"Messages": out}, nil
		}
		// Wake on a new message, a hidden one showing again, an interrupted
		// instance reaching its end, or the end of the wait.
		until := deadline
		if !next.IsZero() && next.Before(until) {
			until = next
		}
		select {
		case <-notify:
		case <-s.clock.After(until.Sub(now)):
		case <-r.Context().Done():
			return map[string][]sqsMessage{"Messages": nil}, nil
		}
	}
}

// nextChangeLocked is the next time a long poll could get an answer without a
// new message: a hidden message shows again or an interruption ends.
func (s *Server) nextChangeLocked(q *queue) time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	now := s.clock.Now()
	for _, m := range q.messages {
		if now.Before(m.hidden) {
			earlier(m.hidden)
		}
	}
	for _, inst := range s.instances {
		if inst.State != "terminated" {
			earlier(inst.TerminateAt)
		}
	}
	return next
}

func (s *Server) deleteMessage(url, handle string) *sqsError {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queueByURL(url)
	if err != nil {
		return err
	}
	for i, m := range q.messages {
		if m.handle == handle && handle != "" {
			q.messages = append(q.messages[:i], q.messages[i+1:]...)
			return nil
		}
	}
	// SQS accepts a handle of a message already deleted; only a handle it
	// never gave out is an error.
	if strings.Contains(handle, "#") {
		return nil
	}
	return &sqsError{status: http.StatusBadRequest, code: "com.amazonaws.sqs#ReceiptHandleIsInvalid", query: "ReceiptHandleIsInvalid;Sender",
		msg: "The input receipt handle \"" + handle + "\" is not a valid receipt handle."}
}
