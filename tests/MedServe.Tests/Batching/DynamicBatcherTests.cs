using System.Threading.Channels;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using MedServe.Protocol;
using MedServe.Tests.Support;
using Microsoft.Extensions.Time.Testing;

namespace MedServe.Tests.Batching;

/// <summary>
/// The dynamic batcher, its rules on a clock and a runner the test controls (<see cref="TestClock"/>,
/// <see cref="GatedRunner"/>): a run holds its executor until the test releases it, so what is queued behind it, and
/// when a batch leaves, depend on no machine's speed. A batch leaves when full, at a preferred size, or when the queue
/// delay has passed on the clock; deadlines expire into 504s without running, work whose caller gave up is skipped, the
/// queue is bounded by count and bytes (429), an input error is bisected to its offender, a runtime failure is a 503 for
/// the whole batch with no bisecting, job items go behind online requests. The last tests run real ONNX Runtime
/// sessions of the sample models: outputs split back right, shapes grouped, a poisoned input fails alone.
/// </summary>
public sealed class DynamicBatcherTests
{
    private static readonly RuntimeOptions Cpu = new() { Accelerator = "cpu" };

    /// <summary>How long a test waits for something the batcher must do at once; reaching it means it never happened.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>A request of <paramref name="rows"/> rows [marker, 0] for the fake model's input <c>x</c> [N, 2].</summary>
    private static InferenceRequest Req(float marker, RequestPriority priority = RequestPriority.Online, long timeoutUs = 0, int rows = 1) =>
        new([TensorTypes.Create<float>("x", [rows, 2], [.. Enumerable.Range(0, rows).SelectMany(_ => new[] { marker, 0f })])], null, $"m{marker}")
        {
            Priority = priority,
            TimeoutMicroseconds = timeoutUs,
        };

    private static float Marker(InferenceResponse response) => response.Outputs[0].AsSpan<float>()[0] / 2;

    [Fact]
    public async Task A_batch_leaves_as_soon_as_it_is_full()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 4, MaxQueueDelayMicroseconds = 1_000_000 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var first = await runner.NextRunAsync("the blocker");
        var queued = Enumerable.Range(1, 4).Select(i => batcher.EnqueueAsync(Req(i))).ToArray();

        first.Release();
        // Four arrivals that found company: the batcher would wait up to a second for more, on a clock that never
        // moves. It does not, because the batch is full.
        var batch = await runner.NextRunAsync("a full batch");
        Assert.Equal([1f, 2f, 3f, 4f], batch.Markers);
        batch.Release();
        var responses = await Task.WhenAll(queued);
        Assert.All(responses, r => Assert.Equal(4, r.BatchSize));
        Assert.Equal([1f, 2f, 3f, 4f], responses.Select(Marker).ToArray()); // each caller gets its own row back
        Assert.Equal(1, (await blocker).BatchSize);
    }

    [Fact]
    public async Task A_batch_leaves_at_a_preferred_size_without_waiting_to_fill()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 8, PreferredBatchSizes = [3], MaxQueueDelayMicroseconds = 1_000_000 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        var queued = Enumerable.Range(1, 3).Select(i => batcher.EnqueueAsync(Req(i))).ToArray();

        running.Release();
        var batch = await runner.NextRunAsync("a batch of the preferred size");
        Assert.Equal([1f, 2f, 3f], batch.Markers);
        batch.Release();
        Assert.All(await Task.WhenAll(queued), r => Assert.Equal(3, r.BatchSize));
        await blocker;
    }

    [Fact]
    public async Task With_one_run_at_once_requests_that_arrive_during_a_run_wait_for_it_though_a_thread_is_free()
    {
        // Two threads, max_concurrent_runs 1: the second thread must not take the first request to arrive as a batch of
        // its own beside the running one; what queues during the run leaves as one batch after it.
        using var pool = new ExecutionPool(2);
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 8, MaxConcurrentRuns = 1 }, pool, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        var queued = Enumerable.Range(1, 3).Select(i => batcher.EnqueueAsync(Req(i))).ToArray();
        Assert.Equal(3, batcher.Queued);
        Assert.False(runner.Started, "a second run started beside the first");

        running.Release();
        var batch = await runner.NextRunAsync("the requests queued during the run");
        Assert.Equal([1f, 2f, 3f], batch.Markers);
        batch.Release();
        Assert.All(await Task.WhenAll(queued), r => Assert.Equal(3, r.BatchSize));
        await blocker;
    }

    [Fact]
    public async Task A_batch_that_is_not_full_leaves_when_its_oldest_request_has_waited_the_queue_delay()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 8, MaxQueueDelayMicroseconds = 1_000 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        var queued = new[] { batcher.EnqueueAsync(Req(1)), batcher.EnqueueAsync(Req(2)) };

        running.Release();
        // Two of eight rows, company expected: the batcher sets a timer for the delay left and waits on it.
        Assert.Equal(TimeSpan.FromMilliseconds(1), await clock.NextTimerAsync("the queue delay"));
        Assert.False(runner.Started, "the batch left before its queue delay passed");
        clock.Advance(TimeSpan.FromMilliseconds(1));

        var batch = await runner.NextRunAsync("the batch after the queue delay");
        Assert.Equal([1f, 2f], batch.Markers);
        batch.Release();
        var responses = await Task.WhenAll(queued);
        Assert.All(responses, r => Assert.Equal(2, r.BatchSize));
        Assert.All(responses, r => Assert.Equal(1.0, r.QueueMilliseconds, 6)); // measured on the test's clock
        await blocker;
    }

    [Fact]
    public async Task A_request_whose_timeout_passes_in_the_queue_gets_a_504_at_that_moment_and_never_runs()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        var late = batcher.EnqueueAsync(Req(7, timeoutUs: 5_000));
        var patient = batcher.EnqueueAsync(Req(8));

        clock.Advance(TimeSpan.FromMicroseconds(4_999));
        Assert.False(late.IsCompleted, "expired before its timeout");
        clock.Advance(TimeSpan.FromMicroseconds(1));
        // Failed by its timer, while the executor is still busy: not when its turn comes.
        Assert.True(late.IsFaulted, "not failed when its timeout passed");
        var error = await Assert.ThrowsAsync<MedServeException>(() => late);
        Assert.Equal(ErrorKind.Timeout, error.Kind);
        Assert.Equal(504, ErrorStatus.Of(error.Kind));
        Assert.Contains("timeout of 5000 µs; it was not run", error.Message, StringComparison.Ordinal);

        running.Release();
        var next = await runner.NextRunAsync("the request behind the expired one");
        Assert.Equal([8f], next.Markers);
        next.Release();
        Assert.Equal(8f, Marker(await patient));
        await blocker;
        Assert.DoesNotContain(7f, runner.AllMarkers);
    }

    [Fact]
    public async Task The_deployment_default_timeout_applies_to_requests_that_carry_none()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1, DefaultTimeoutMicroseconds = 5_000 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100, timeoutUs: 60_000_000));
        var running = await runner.NextRunAsync("the blocker");
        var plain = batcher.EnqueueAsync(Req(1));

        clock.Advance(TimeSpan.FromMilliseconds(5));
        Assert.Equal(ErrorKind.Timeout, (await Assert.ThrowsAsync<MedServeException>(() => plain)).Kind);
        running.Release();
        Assert.Equal(100f, Marker(await blocker)); // its own 60 s timeout was not replaced by the default
    }

    [Fact]
    public async Task A_request_still_queued_when_its_call_times_out_gets_a_TimeoutException_and_never_runs()
    {
        // A front end that reaches a local replica directly passes the grain call's timeout: the request is answered as
        // the grain call would have been, and a request that runs at once needs no timer for it.
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100), callTimeout: TimeSpan.FromSeconds(30));
        var running = await runner.NextRunAsync("the blocker");
        var queued = batcher.EnqueueAsync(Req(7), callTimeout: TimeSpan.FromSeconds(30));
        var ownTimeout = batcher.EnqueueAsync(Req(8, timeoutUs: 5_000_000), callTimeout: TimeSpan.FromSeconds(30));

        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(ErrorKind.Timeout, (await Assert.ThrowsAsync<MedServeException>(() => ownTimeout)).Kind); // its own, earlier
        clock.Advance(TimeSpan.FromSeconds(25) - TimeSpan.FromTicks(1));
        Assert.False(queued.IsCompleted, "answered before the call timeout");
        clock.Advance(TimeSpan.FromTicks(1));
        var error = await Assert.ThrowsAsync<TimeoutException>(() => queued);
        Assert.Contains("past the call timeout (30 s); it was not run", error.Message, StringComparison.Ordinal);

        running.Release();
        Assert.Equal(100f, Marker(await blocker)); // running when its call timed out: answered when done
        Assert.DoesNotContain(7f, runner.AllMarkers);
        Assert.DoesNotContain(8f, runner.AllMarkers);
    }

    [Fact]
    public async Task A_request_whose_caller_gave_up_is_skipped_at_dispatch_and_never_runs()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 8, MaxQueueDelayMicroseconds = 0 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        using var caller = new CancellationTokenSource();
        var gone = batcher.EnqueueAsync(Req(5), caller.Token);
        var kept = batcher.EnqueueAsync(Req(6));
        caller.Cancel(); // the HTTP client went away, or the grain call timed out

        running.Release();
        var batch = await runner.NextRunAsync("the batch after the blocker");
        Assert.Equal([6f], batch.Markers);
        batch.Release();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gone);
        Assert.Equal(1, (await kept).BatchSize);
        await blocker;
        Assert.DoesNotContain(5f, runner.AllMarkers);

        // A caller that gave up before the request was queued does not queue it at all.
        var already = batcher.EnqueueAsync(Req(9), caller.Token);
        Assert.True(already.IsCanceled);
        Assert.Equal(0, batcher.InFlight);
    }

    [Fact]
    public async Task Work_nobody_waits_for_does_not_keep_a_new_request_out_of_a_full_queue()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1, MaxQueueSize = 2 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        using var caller = new CancellationTokenSource();
        var gone = batcher.EnqueueAsync(Req(1), caller.Token);
        var waiting = batcher.EnqueueAsync(Req(2));
        var full = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Req(3)));
        Assert.Equal(ErrorKind.Overloaded, full.Kind);

        caller.Cancel();
        var admitted = batcher.EnqueueAsync(Req(4)); // the given-up request makes room
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => gone);
        Assert.Equal(2, batcher.Queued);
        runner.Open();
        running.Release();
        var served = await Task.WhenAll(waiting, admitted);
        Assert.Equal([2f, 4f], served.Select(Marker).ToArray());
        await blocker;
    }

    [Fact]
    public async Task A_full_queue_refuses_with_429_and_job_items_may_fill_only_half_of_it()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1, MaxQueueSize = 4 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        Assert.Equal(1, batcher.InFlight);

        var jobs = new[] { batcher.EnqueueAsync(Req(1, RequestPriority.Job)), batcher.EnqueueAsync(Req(2, RequestPriority.Job)) };
        var thirdJob = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Req(3, RequestPriority.Job)));
        Assert.Equal(ErrorKind.Overloaded, thirdJob.Kind);
        Assert.Contains("job items may use half", thirdJob.Message, StringComparison.Ordinal);
        Assert.True(thirdJob.IsRetryable);

        var online = new[] { batcher.EnqueueAsync(Req(4)), batcher.EnqueueAsync(Req(5)) };
        var fifth = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Req(6)));
        Assert.Equal(ErrorKind.Overloaded, fifth.Kind);
        Assert.Equal(429, ErrorStatus.Of(fifth.Kind));
        Assert.Contains("max_queue_size 4", fifth.Message, StringComparison.Ordinal);

        runner.Open();
        running.Release();
        await Task.WhenAll([blocker, .. jobs, .. online]);
        Assert.DoesNotContain(3f, runner.AllMarkers);
        Assert.DoesNotContain(6f, runner.AllMarkers);
    }

    [Fact]
    public async Task The_queue_is_bounded_by_bytes_too_and_over_the_bound_answers_429_saying_so()
    {
        // One row of the fake model's input is 2 floats: 8 bytes. The bound is five rows' worth.
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1, MaxQueueSize = 1000, MaxQueueBytes = 40 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");

        // An empty queue takes one request of any size: a bound that refused it would refuse it forever.
        var big = batcher.EnqueueAsync(Req(1, rows: 10));
        Assert.Equal(80, batcher.QueuedBytes);
        var behindBig = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Req(2)));
        Assert.Equal(ErrorKind.Overloaded, behindBig.Kind);

        running.Release();
        var bigRun = await runner.NextRunAsync("the big request");
        Assert.Equal(10, bigRun.Rows);
        Assert.Equal(0, batcher.QueuedBytes);
        var small = Enumerable.Range(10, 5).Select(i => batcher.EnqueueAsync(Req(i))).ToArray();
        Assert.Equal(40, batcher.QueuedBytes);
        var over = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Req(20)));
        Assert.Equal(ErrorKind.Overloaded, over.Kind);
        Assert.Equal(429, ErrorStatus.Of(over.Kind));
        Assert.True(over.IsRetryable);
        Assert.Contains("full by size (40 bytes waiting, this request 8, max_queue_bytes 40)", over.Message, StringComparison.Ordinal);
        Assert.Equal(5, batcher.Queued); // far below max_queue_size: the bytes refused it

        runner.Open();
        bigRun.Release();
        await Task.WhenAll([blocker, big, .. small]);
        Assert.Equal(0, batcher.QueuedBytes);
        Assert.DoesNotContain(2f, runner.AllMarkers);
        Assert.DoesNotContain(20f, runner.AllMarkers);
    }

    [Fact]
    public async Task An_input_error_in_a_batch_is_bisected_until_the_offender_fails_alone()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 8, MaxQueueDelayMicroseconds = 1_000_000 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        float[] markers = [1, 2, 3, GatedRunner.Poison, 5, 6, 7, 8];
        var tasks = markers.Select(m => batcher.EnqueueAsync(Req(m))).ToArray();

        runner.Open();
        running.Release();
        await Task.WhenAll(tasks.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));
        for (var i = 0; i < markers.Length; i++)
        {
            if (markers[i] == GatedRunner.Poison)
            {
                var error = Assert.IsType<MedServeException>(tasks[i].Exception!.InnerException);
                Assert.Equal(ErrorKind.InvalidInput, error.Kind);
                Assert.Equal(400, ErrorStatus.Of(error.Kind));
            }
            else
            {
                Assert.True(tasks[i].IsCompletedSuccessfully, $"request {markers[i]} was blamed for another's input");
                Assert.Equal(markers[i], Marker(await tasks[i]));
            }
        }
        // 8 fails, its halves: 4 with the offender fails, 4 without runs; then 2 and 2, then the offender alone.
        Assert.Equal([1, 8, 4, 2, 2, 1, 1, 4], runner.Runs.Select(r => r.Rows).ToArray());
        Assert.Contains(runner.Runs, r => r.Markers is [GatedRunner.Poison]);
        await blocker;
    }

    [Fact]
    public async Task A_runtime_failure_is_a_503_for_every_request_of_its_batch_and_is_not_bisected()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        // No queue delay: the four queued behind the blocker leave together, and the lone request after them at once.
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 4, MaxQueueDelayMicroseconds = 0 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100));
        var running = await runner.NextRunAsync("the blocker");
        var tasks = Enumerable.Range(1, 4).Select(i => batcher.EnqueueAsync(Req(i))).ToArray();

        running.Release();
        var batch = await runner.NextRunAsync("the batch");
        batch.Release(MedServeException.Unavailable("fake:1 could not run the request just now (out of memory); the input is not at fault"));
        foreach (var task in tasks)
        {
            var error = await Assert.ThrowsAsync<MedServeException>(() => task);
            Assert.Equal(ErrorKind.Unavailable, error.Kind);
            Assert.Equal(503, ErrorStatus.Of(error.Kind));
            Assert.True(error.IsRetryable);
        }

        // One executor: the next run starts only after the failed batch is wholly done, so no split of it ran.
        var after = batcher.EnqueueAsync(Req(9));
        var next = await runner.NextRunAsync("the request after the failure");
        Assert.Equal([9f], next.Markers);
        next.Release();
        Assert.Equal(9f, Marker(await after));
        Assert.Equal([1, 4, 1], runner.Runs.Select(r => r.Rows).ToArray());
        await blocker;
    }

    [Fact]
    public async Task Online_requests_go_before_queued_job_items()
    {
        var (clock, runner) = (new TestClock(), new GatedRunner());
        await using var batcher = new DynamicBatcher(runner, new BatchingPolicy { MaxBatchSize = 1 }, 1, time: clock);
        var blocker = batcher.EnqueueAsync(Req(100, RequestPriority.Job));
        var running = await runner.NextRunAsync("the blocker");
        var jobs = Enumerable.Range(1, 3).Select(i => batcher.EnqueueAsync(Req(i, RequestPriority.Job))).ToArray();
        var online = batcher.EnqueueAsync(Req(9));

        runner.Open();
        running.Release();
        await Task.WhenAll([blocker, online, .. jobs]);
        // Queued last, run first: the online request goes before every job item that waited.
        Assert.Equal([100f, 9f, 1f, 2f, 3f], runner.Runs.Select(r => r.Markers.Single()).ToArray());
    }

    // Real ONNX Runtime sessions of the sample models.

    private static OnnxModel Sample(string name)
    {
        var package = ModelPackage.FromDirectory(Path.Combine(Paths.Samples, name));
        return OnnxModel.Load(package.Model, package.Manifest, Cpu);
    }

    private static InferenceRequest Rows(IEnumerable<float[]> rows, string? id = null, RequestPriority priority = RequestPriority.Online)
    {
        var list = rows.ToList();
        return new InferenceRequest([TensorTypes.Create("input", [list.Count, 30], list.SelectMany(r => r).ToArray())], null, id) { Priority = priority };
    }

    private static InferenceRequest Image(int size, float value, string id) =>
        new([TensorTypes.Create("image", [1, 1, size, size], Enumerable.Repeat(value, size * size).ToArray())], null, id);

    [Fact]
    public async Task ConcurrentRequestsRunAsBatchesAndEachGetsItsOwnRows()
    {
        var data = TestData.BreastCancer();
        await using var batcher = new DynamicBatcher(Sample("breast-cancer-logreg"), new BatchingPolicy { MaxBatchSize = 8, MaxQueueDelayMicroseconds = 20_000 }, executors: 1);
        var requests = data.Take(40).Select((row, i) => batcher.EnqueueAsync(Rows([row.Features], $"r{i}"))).ToArray();
        var responses = await Task.WhenAll(requests);

        Assert.Contains(responses, r => r.BatchSize > 1);
        Assert.All(responses, r => Assert.InRange(r.BatchSize, 1, 8));
        for (var i = 0; i < responses.Length; i++)
        {
            // Each response is its own row's answer, split back out of the batch, with its id.
            Assert.Equal($"r{i}", responses[i].Id);
            var probabilities = responses[i].Outputs.Single(o => o.Name == "probabilities");
            Assert.Equal([1L, 2L], probabilities.Shape);
            Assert.Equal(data[i].PBenignLogreg, probabilities.AsSpan<float>()[1], 4);
        }
    }

    [Fact]
    public async Task RequestsOfDifferentShapesAreGroupedNotRejected()
    {
        await using var batcher = new DynamicBatcher(Sample("ct-bone-segmenter"), new BatchingPolicy { MaxBatchSize = 16, MaxQueueDelayMicroseconds = 20_000 }, executors: 1);
        var sizes = new[] { 32, 64, 32, 48, 64, 32, 48, 64 };
        var responses = await Task.WhenAll(sizes.Select((s, i) => batcher.EnqueueAsync(Image(s, 0.5f * (i % 3), $"i{i}"))));
        for (var i = 0; i < sizes.Length; i++)
        {
            var mask = responses[i].Outputs.Single();
            Assert.Equal($"i{i}", responses[i].Id);
            Assert.Equal([1L, 1L, sizes[i], sizes[i]], mask.Shape);
        }
        // Two images of the same size and value give the same mask whether or not they shared a batch.
        Assert.Equal(responses[2].Outputs[0].Data, responses[5].Outputs[0].Data);
        Assert.NotEqual(responses[0].Outputs[0].Data, responses[2].Outputs[0].Data);
    }

    [Fact]
    public async Task APoisonedInputFailsAloneAndTheRestOfItsBatchGetsResults()
    {
        var table = Enumerable.Range(0, 10).Select(i => i * 1.5f).ToArray();
        var manifest = new ModelManifest
        {
            Name = "lookup",
            Version = "1",
            Inputs = [new TensorSpec { Name = "index", Datatype = TensorDatatype.INT64, Shape = [-1] }],
            Outputs = [new TensorSpec { Name = "value", Datatype = TensorDatatype.FP32, Shape = [-1] }],
        };
        await using var batcher = new DynamicBatcher(OnnxModel.Load(OnnxBuilder.Lookup(table), manifest, Cpu), new BatchingPolicy { MaxBatchSize = 16, MaxQueueDelayMicroseconds = 50_000 }, executors: 1);
        long[] indices = [1, 2, 3, 99, 4, 5, 6, 7, -50, 8, 9, 0];
        var tasks = indices.Select((index, i) => batcher.EnqueueAsync(new InferenceRequest([TensorTypes.Create("index", [1], new[] { index })], null, $"q{i}"))).ToArray();
        await Task.WhenAll(tasks.Select(t => t.ContinueWith(_ => { }, TaskScheduler.Default)));

        for (var i = 0; i < indices.Length; i++)
        {
            if (indices[i] is 99 or -50)
            {
                // ONNX Runtime's InvalidArgument: the input's fault, a 400, found by bisecting.
                var error = Assert.IsType<MedServeException>(tasks[i].Exception!.InnerException);
                Assert.Equal(ErrorKind.InvalidInput, error.Kind);
                Assert.DoesNotContain("99", error.Message, StringComparison.Ordinal);
            }
            else
            {
                Assert.True(tasks[i].IsCompletedSuccessfully, $"request {i} (index {indices[i]}) should have its result");
                Assert.Equal(table[indices[i]], (await tasks[i]).Outputs[0].AsSpan<float>()[0]);
            }
        }
        var batchSizes = await Task.WhenAll(tasks.Where(t => t.IsCompletedSuccessfully).Select(async t => (await t).BatchSize));
        Assert.Contains(batchSizes, size => size > 1);
        // The queue keeps moving after the poisoned batch.
        var after = await batcher.EnqueueAsync(new InferenceRequest([TensorTypes.Create("index", [1], new[] { 5L })]));
        Assert.Equal(table[5], after.Outputs[0].AsSpan<float>()[0]);
    }

    [Fact]
    public async Task APolicyChangeAppliesWithoutDroppingQueuedRequests()
    {
        var rows = TestData.BreastCancer();
        var batcher = new DynamicBatcher(Sample("breast-cancer-logreg"), new BatchingPolicy { MaxBatchSize = 1 }, executors: 1);
        var first = Enumerable.Range(0, 50).Select(i => batcher.EnqueueAsync(Rows([rows[i % rows.Count].Features]))).ToArray();
        batcher.UpdatePolicy(new BatchingPolicy { MaxBatchSize = 16, MaxQueueDelayMicroseconds = 20_000 });
        var second = Enumerable.Range(0, 50).Select(i => batcher.EnqueueAsync(Rows([rows[i % rows.Count].Features]))).ToArray();
        var all = await Task.WhenAll([.. first, .. second]);
        Assert.Equal(100, all.Length);
        Assert.Contains(all, r => r.BatchSize > 1);
        Assert.All(all, r => Assert.InRange(r.BatchSize, 1, 16));

        // Stopping drains: requests queued at the stop are answered; later ones are refused as not ready.
        var queued = Enumerable.Range(0, 20).Select(i => batcher.EnqueueAsync(Rows([rows[i].Features]))).ToArray();
        await batcher.DisposeAsync();
        Assert.All(queued, t => Assert.True(t.IsCompletedSuccessfully));
        var refused = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Rows([rows[0].Features])));
        Assert.Equal(ErrorKind.NotReady, refused.Kind);
    }

    [Fact]
    public async Task ALoneRequestDoesNotWaitForABatchThatWillNotCome()
    {
        var rows = TestData.BreastCancer();
        // A queue delay of two seconds: a closed loop of one caller must never pay it.
        await using var batcher = new DynamicBatcher(Sample("breast-cancer-logreg"), new BatchingPolicy { MaxBatchSize = 32, MaxQueueDelayMicroseconds = 2_000_000 }, executors: 1);
        for (var i = 0; i < 20; i++)
        {
            var response = await batcher.EnqueueAsync(Rows([rows[i].Features]));
            Assert.Equal(1, response.BatchSize);
            Assert.True(response.QueueMilliseconds < 1000, $"request {i} waited {response.QueueMilliseconds} ms for company that never came");
        }
    }

    /// <summary>A clock the test moves; it also reports the due time of each timer made on it (the batcher waiting).</summary>
    private sealed class TestClock : FakeTimeProvider
    {
        private readonly Channel<TimeSpan> _timers = Channel.CreateUnbounded<TimeSpan>();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new Recorded(base.CreateTimer(callback, state, dueTime, period), _timers);
            if (dueTime != Timeout.InfiniteTimeSpan)
            {
                _timers.Writer.TryWrite(dueTime);
            }
            return timer;
        }

        /// <summary>The due time of the next timer started on this clock (made with one, or changed to one).</summary>
        public async Task<TimeSpan> NextTimerAsync(string what)
        {
            try
            {
                return await _timers.Reader.ReadAsync().AsTask().WaitAsync(Bound);
            }
            catch (TimeoutException)
            {
                throw new Xunit.Sdk.XunitException($"the batcher set no timer for {what} within {Bound.TotalSeconds} s");
            }
        }

        /// <summary>A timer of the fake clock whose every start (a due time that is not infinite) is recorded.</summary>
        private sealed class Recorded(ITimer inner, Channel<TimeSpan> starts) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period)
            {
                var changed = inner.Change(dueTime, period);
                if (dueTime != Timeout.InfiniteTimeSpan)
                {
                    starts.Writer.TryWrite(dueTime);
                }
                return changed;
            }

            public void Dispose() => inner.Dispose();

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }

    /// <summary>
    /// A model in memory: input <c>x</c> [N, 2] FP32, output <c>y</c> = 2x, batchable. Every run is recorded and holds
    /// its executor until the test releases it (or <see cref="Open"/> lets every run through). A row whose first value
    /// is <see cref="Poison"/> makes the run fail as the input's fault, as ONNX Runtime refusing a value does.
    /// </summary>
    private sealed class GatedRunner : IModelRunner
    {
        public const float Poison = -1;

        private readonly Channel<Run> _started = Channel.CreateUnbounded<Run>();
        private readonly List<Run> _runs = [];
        private volatile bool _open;

        public ModelManifest Manifest { get; } = new()
        {
            Name = "fake",
            Version = "1",
            Inputs = [new TensorSpec { Name = "x", Datatype = TensorDatatype.FP32, Shape = [-1, 2] }],
            Outputs = [new TensorSpec { Name = "y", Datatype = TensorDatatype.FP32, Shape = [-1, 2] }],
        };

        public bool Batchable => true;

        public IReadOnlyList<string> OutputNames { get; } = ["y"];

        /// <summary>Every run so far, in order.</summary>
        public IReadOnlyList<Run> Runs
        {
            get
            {
                lock (_runs)
                {
                    return [.. _runs];
                }
            }
        }

        public IEnumerable<float> AllMarkers => Runs.SelectMany(r => r.Markers);

        /// <summary>A run has started that the test has not taken with <see cref="NextRunAsync"/>.</summary>
        public bool Started => _started.Reader.Count > 0;

        /// <summary>Lets every run through from now on, those waiting included.</summary>
        public void Open()
        {
            _open = true;
            foreach (var run in Runs)
            {
                run.Release();
            }
        }

        public async Task<Run> NextRunAsync(string what)
        {
            try
            {
                return await _started.Reader.ReadAsync().AsTask().WaitAsync(Bound);
            }
            catch (TimeoutException)
            {
                throw new Xunit.Sdk.XunitException($"no run started for {what} within {Bound.TotalSeconds} s");
            }
        }

        public void Validate(InferenceRequest request)
        {
            if (request.Inputs is not [{ Name: "x", Datatype: TensorDatatype.FP32, Shape: [> 0, 2] }])
            {
                throw MedServeException.Invalid("the fake model takes x [N, 2] FP32", "x");
            }
        }

        public (Tensor[] Outputs, TimeSpan Elapsed) RunValidated(Tensor[] inputs, IReadOnlyList<string> outputNames)
        {
            // A stacked batch runs over a pooled buffer that may be longer than its shape: read the shape's worth.
            var x = inputs[0];
            var values = x.AsSpan<float>()[..(int)x.ElementCount].ToArray();
            var run = new Run(values);
            lock (_runs)
            {
                _runs.Add(run);
            }
            if (_open)
            {
                run.Release();
            }
            _started.Writer.TryWrite(run);
            // The executor is held here, as by a long run. A test that fails before releasing it must not hang.
            if (!run.Outcome.Wait(Bound))
            {
                throw new TimeoutException($"a run of {run.Rows} rows was never released");
            }
            var failure = run.Outcome.Result;
            if (failure is not null)
            {
                throw failure;
            }
            if (run.Markers.Contains(Poison))
            {
                throw MedServeException.Invalid("fake:1 rejected the input values");
            }
            return ([TensorTypes.Create<float>("y", [run.Rows, 2], [.. values.Select(v => v * 2)])], TimeSpan.Zero);
        }

        public void Dispose()
        {
        }
    }

    /// <summary>One run of <see cref="GatedRunner"/>: its rows, and the gate that holds it.</summary>
    private sealed class Run(float[] values)
    {
        private readonly TaskCompletionSource<MedServeException?> _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Rows => values.Length / 2;

        /// <summary>The first value of each row: which requests share this run.</summary>
        public float[] Markers => [.. values.Where((_, i) => i % 2 == 0)];

        public Task<MedServeException?> Outcome => _gate.Task;

        /// <summary>Lets the run finish; with an error, the run fails with it.</summary>
        public void Release(MedServeException? failure = null) => _gate.TrySetResult(failure);
    }
}
