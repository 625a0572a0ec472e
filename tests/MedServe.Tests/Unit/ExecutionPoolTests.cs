using System.Diagnostics;
using MedServe.Inference.Runtime;
using Microsoft.Extensions.Time.Testing;

namespace MedServe.Tests.Unit;

/// <summary>
/// The silo's ONNX Runtime threads: how many runs it allows at once. With cores to spare, all its threads; on a busy
/// silo, the runs' share of its CPU time in threads, so a run that would take a core from the front ends waits for the
/// one in progress (and what queues meanwhile leaves as one batch). Inline runs on a request's thread count too.
/// </summary>
public sealed class ExecutionPoolTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(2, 2, 1.0, 0.5, 0.45, 2)]   // a quarter of two cores busy: cores to spare, no limit
    [InlineData(2, 2, 1.0, 1.7, 0.8, 1)]    // busy, runs 47% of the CPU (a small CNN behind HTTP): one at a time
    [InlineData(2, 2, 1.0, 1.7, 0.2, 1)]    // busy, runs 12% (logistic regression): one at a time
    [InlineData(2, 2, 1.0, 1.9, 1.8, 2)]    // busy, runs 95% (a heavy model): every thread
    [InlineData(16, 16, 1.0, 15, 6.9, 7)]   // sixteen cores, runs 46%: seven
    [InlineData(16, 16, 1.0, 15, 0.1, 1)]   // never under one
    [InlineData(16, 16, 1.0, 15, 30, 16)]   // runs waiting on a device (wall time over CPU time): never over the threads
    [InlineData(2, 2, 0, 0, 0, 2)]          // no interval: no limit
    public void The_limit_is_the_runs_share_of_a_busy_silos_cpu(int size, int cores, double wall, double cpu, double run, int expected) =>
        Assert.Equal(expected, ExecutionPool.LimitFor(size, cores, wall, cpu, run));

    [Fact]
    public void An_adaptive_pool_sets_its_limit_from_each_intervals_cpu_time_and_lifts_it_when_the_load_goes()
    {
        var clock = new FakeTimeProvider();
        var cpu = TimeSpan.Zero;
        using var pool = new ExecutionPool(2, () => cpu, cores: 2, clock);
        Assert.Equal(2, pool.Limit);

        // A busy interval: 90% of two cores, 40% of it in runs.
        cpu += TimeSpan.FromSeconds(0.45);
        pool.AddRunTime((long)(0.18 * Stopwatch.Frequency));
        clock.Advance(ExecutionPool.AdjustEvery);
        Assert.Equal(1, pool.Limit);

        // The load goes: a quiet interval lifts the limit.
        cpu += TimeSpan.FromSeconds(0.01);
        clock.Advance(ExecutionPool.AdjustEvery);
        Assert.Equal(2, pool.Limit);
    }

    [Fact]
    public async Task A_pool_thread_waits_while_an_inline_run_holds_the_only_slot_and_goes_when_it_ends()
    {
        using var pool = new ExecutionPool(2);
        pool.SetLimit(1);
        Assert.True(pool.TryEnterInline());
        Assert.False(pool.TryEnterInline()); // one at a time, inline runs as well

        var work = new Work();
        pool.Schedule(work);
        Assert.True(SpinWait.SpinUntil(() => pool.Waiting == 1, Bound), "the pool thread did not wait for the slot");
        Assert.False(work.Ran.Task.IsCompleted);

        pool.ExitInline();
        await work.Ran.Task.WaitAsync(Bound);
    }

    [Fact]
    public async Task Raising_the_limit_lets_a_waiting_thread_go_at_once()
    {
        using var pool = new ExecutionPool(2);
        pool.SetLimit(1);
        Assert.True(pool.TryEnterInline());
        var work = new Work();
        pool.Schedule(work);
        Assert.True(SpinWait.SpinUntil(() => pool.Waiting == 1, Bound), "the pool thread did not wait for the slot");

        pool.SetLimit(2);
        await work.Ran.Task.WaitAsync(Bound);
        pool.ExitInline();
    }

    private sealed class Work : IPoolWork
    {
        public TaskCompletionSource Ran { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void RunOnPoolThread() => Ran.TrySetResult();
    }
}
