package provisioning_test

import (
	"context"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/backstop-sh/backstop/pkg/controllers/provisioning"
)

var _ = Describe("the batcher", func() {
	var (
		clk     *clocktesting.FakeClock
		batcher *provisioning.Batcher
		closed  chan bool
		cancel  context.CancelFunc
	)
	start := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

	BeforeEach(func() {
		clk = clocktesting.NewFakeClock(start)
		batcher = provisioning.NewBatcher(clk, time.Second, 10*time.Second)
		closed = make(chan bool, 1)
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
		// Locals, so a goroutine of an earlier spec cannot write into this one's channel.
		b, out := batcher, closed
		go func() { out <- b.Wait(ctx) }()
	})

	// waitForTimers lets the waiting goroutine arm both its timers (the max
	// and the idle one) before time moves on.
	waitForTimers := func() { Eventually(clk.Waiters).Should(Equal(2)) }

	It("does not open a window without a trigger", func() {
		clk.Step(time.Hour)
		Consistently(closed, 50*time.Millisecond).ShouldNot(Receive())
	})

	It("closes a window after the idle duration without triggers", func() {
		batcher.Trigger()
		waitForTimers()
		clk.Step(999 * time.Millisecond)
		Consistently(closed, 50*time.Millisecond).ShouldNot(Receive())
		clk.Step(time.Millisecond)
		Eventually(closed).Should(Receive(BeTrue()))
	})

	It("extends the window to the idle duration after each trigger", func() {
		batcher.Trigger()
		for i := 0; i < 5; i++ {
			waitForTimers()
			clk.Step(900 * time.Millisecond)
			waitForTimers()
			Consistently(closed, 20*time.Millisecond).ShouldNot(Receive(), "closed %d×900ms in, 900ms after a trigger", i+1)
			batcher.Trigger()
		}
		waitForTimers()
		clk.Step(900 * time.Millisecond)
		waitForTimers()
		Consistently(closed, 20*time.Millisecond).ShouldNot(Receive(), "closed 900ms after the last trigger")
		clk.Step(100 * time.Millisecond)
		Eventually(closed).Should(Receive(BeTrue()), "should close 1s after the last trigger")
		Expect(clk.Since(start)).To(Equal(5500 * time.Millisecond))
	})

	It("closes at the max duration however often it is triggered", func() {
		batcher.Trigger()
		for elapsed := time.Duration(0); elapsed < 10*time.Second-500*time.Millisecond; elapsed += 500 * time.Millisecond {
			waitForTimers()
			batcher.Trigger()
			clk.Step(500 * time.Millisecond)
			waitForTimers()
			Consistently(closed, 5*time.Millisecond).ShouldNot(Receive(), "closed early at %s", elapsed+500*time.Millisecond)
		}
		batcher.Trigger()
		clk.Step(500 * time.Millisecond)
		Eventually(closed).Should(Receive(BeTrue()))
		Expect(clk.Since(start)).To(Equal(10 * time.Second))
	})

	It("folds nudges into one batch per idle duration, without a window of their own", func() {
		for i := 0; i < 100; i++ {
			batcher.Nudge()
		}
		Eventually(clk.Waiters).Should(Equal(1), "one nudge waits, the others are folded into it")
		Consistently(closed, 50*time.Millisecond).ShouldNot(Receive(), "a nudge waits one idle duration")
		clk.Step(time.Second)
		// The window's idle timer is already due (no trigger holds it open);
		// the fake clock fires it on its next step.
		waitForTimers()
		clk.Step(time.Nanosecond)
		Eventually(closed).Should(Receive(BeTrue()), "the nudge closes at once: no trigger holds a window open")
		again := make(chan bool, 1)
		go func() { again <- batcher.Wait(context.Background()) }()
		clk.Step(time.Hour)
		Consistently(again, 50*time.Millisecond).ShouldNot(Receive(), "100 nudges made a second batch")
		batcher.Nudge()
		Eventually(clk.Waiters).Should(Equal(1))
		clk.Step(time.Second)
		waitForTimers()
		clk.Step(time.Nanosecond)
		Eventually(again).Should(Receive(BeTrue()), "a nudge after the first one's batch asks again")
	})

	It("gives up when its context ends", func() {
		batcher.Trigger()
		waitForTimers()
		cancel()
		Eventually(closed).Should(Receive(BeFalse()))
	})
})

var _ = Describe("the batcher's rounds while a window is open", func() {
	It("calls for a round every period in which a trigger came, again when a round could not start, and never after the window", func() {
		clk := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC))
		batcher := provisioning.NewBatcher(clk, time.Second, 10*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		rounds := make(chan struct{}, 10)
		var start atomic.Bool
		start.Store(true)
		closed := make(chan bool, 1)
		go func() {
			closed <- batcher.WaitWith(ctx, 250*time.Millisecond, func() bool {
				rounds <- struct{}{}
				return start.Load()
			})
		}()
		// tick moves the clock to the next round, once the max, idle and
		// round timers are armed.
		tick := func() {
			Eventually(clk.Waiters).Should(Equal(3))
			clk.Step(250 * time.Millisecond)
		}
		batcher.Trigger()
		tick()
		Eventually(rounds).Should(Receive(), "the window's first trigger")
		tick()
		Consistently(rounds, 50*time.Millisecond).ShouldNot(Receive(), "no trigger since the last round")

		batcher.Trigger()
		start.Store(false)
		tick()
		Eventually(rounds).Should(Receive(), "a new trigger")
		tick()
		Eventually(rounds).Should(Receive(), "the round before could not start")
		start.Store(true)
		tick()
		Eventually(rounds).Should(Receive(), "nor that one")
		tick()
		Eventually(closed).Should(Receive(BeTrue()), "a second after the last trigger")
		Expect(rounds).NotTo(Receive(), "that round started")
	})
})
