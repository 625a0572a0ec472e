using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using MedServe.Tests.Support;
using Xunit;

namespace MedServe.Tests.Batching;

/// <summary>
/// The dynamic batcher with real ONNX Runtime sessions of the sample models: batches form, shapes are grouped,
/// priorities hold, deadlines expire, a poisoned input fails alone, a full queue refuses, stopping drains.
/// </summary>
public sealed class DynamicBatcherTests
{
    private static readonly RuntimeOptions Cpu = new() { Accelerator = "cpu" };

    private static OnnxModel Sample(string name)
    {
        var package = ModelPackage.FromDirectory(Path.Combine(Paths.Samples, name));
        return OnnxModel.Load(package.Model, package.Manifest, Cpu);
    }

    private static InferenceRequest Rows(IEnumerable<float[]> rows, string? id = null, RequestPriority priority = RequestPriority.Online, long timeoutUs = 0)
    {
        var list = rows.ToList();
        return new InferenceRequest([TensorTypes.Create("input", [list.Count, 30], list.SelectMany(r => r).ToArray())], null, id)
        {
            Priority = priority,
            TimeoutMicroseconds = timeoutUs,
        };
    }

    /// <summary>A segmenter request big enough to keep an executor busy for a while.</summary>
    private static InferenceRequest BigImage(int rows, int size, RequestPriority priority = RequestPriority.Job) =>
        new([TensorTypes.Create("image", [rows, 1, size, size], new float[rows * size * size])]) { Priority = priority };

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
    public async Task OnlineRequestsGoBeforeQueuedJobItems()
    {
        var rows = TestData.BreastCancer();
        await using var batcher = new DynamicBatcher(Sample("breast-cancer-logreg"), new BatchingPolicy { MaxBatchSize = 1 }, executors: 1);
        var finished = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var blocker = batcher.EnqueueAsync(Rows(Enumerable.Repeat(rows[0].Features, 20_000), "blocker", RequestPriority.Job));
        var jobs = Enumerable.Range(0, 30).Select(i => Track(batcher.EnqueueAsync(Rows([rows[i].Features], $"job{i}", RequestPriority.Job)))).ToList();
        var online = Track(batcher.EnqueueAsync(Rows([rows[0].Features], "online")));
        await Task.WhenAll([blocker, online, .. jobs]);

        var order = finished.Where(id => id != "blocker").ToList();
        // Everything queued behind the blocker: the online request, queued last, runs first. (Completions are
        // observed on pool threads, so allow a neighbour to be seen first.)
        Assert.InRange(order.IndexOf("online"), 0, 2);

        async Task Track(Task<InferenceResponse> task) => finished.Enqueue((await task).Id!);
    }

    [Fact]
    public async Task ARequestWhoseTimeoutPassesInTheQueueFailsWithATimeoutAndNeverRuns()
    {
        await using var batcher = new DynamicBatcher(Sample("ct-bone-segmenter"), new BatchingPolicy { MaxBatchSize = 1 }, executors: 1);
        var blockers = Enumerable.Range(0, 4).Select(_ => batcher.EnqueueAsync(BigImage(8, 512))).ToArray();
        await WaitUntil(() => batcher.Queued < 4); // one is running
        var late = batcher.EnqueueAsync(Image(32, 0, "late") with { TimeoutMicroseconds = 5_000 });
        var patient = batcher.EnqueueAsync(Image(32, 0, "patient"));

        var error = await Assert.ThrowsAsync<MedServeException>(() => late);
        Assert.Equal(ErrorKind.Timeout, error.Kind);
        Assert.Contains("timeout of 5000 µs", error.Message, StringComparison.Ordinal);
        Assert.False(blockers.All(b => b.IsCompleted), "the timeout must fire while the queue is still busy, not when the request's turn comes");
        Assert.Equal("patient", (await patient).Id);
        await Task.WhenAll(blockers);
    }

    [Fact]
    public async Task TheDeploymentDefaultTimeoutAppliesToRequestsWithoutOne()
    {
        await using var batcher = new DynamicBatcher(Sample("ct-bone-segmenter"), new BatchingPolicy { MaxBatchSize = 1, DefaultTimeoutMicroseconds = 5_000 }, executors: 1);
        var blocker = batcher.EnqueueAsync(BigImage(16, 512) with { TimeoutMicroseconds = 60_000_000 });
        await WaitUntil(() => batcher.Queued == 0);
        var error = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Image(32, 0, "x")));
        Assert.Equal(ErrorKind.Timeout, error.Kind);
        await blocker;
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
    public async Task AFullQueueRefusesWithOverloadedAndJobItemsMayOnlyFillHalf()
    {
        await using var batcher = new DynamicBatcher(Sample("ct-bone-segmenter"), new BatchingPolicy { MaxBatchSize = 1, MaxQueueSize = 4 }, executors: 1);
        // A blocker that keeps the only executor busy for a good while (16 slices of 512x512).
        var running = batcher.EnqueueAsync(BigImage(16, 512));
        await WaitUntil(() => batcher.Queued == 0);
        Assert.Equal(1, batcher.InFlight);
        var jobs = new[] { batcher.EnqueueAsync(BigImage(1, 32)), batcher.EnqueueAsync(BigImage(1, 32)) };
        var thirdJob = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(BigImage(1, 32)));
        Assert.Equal(ErrorKind.Overloaded, thirdJob.Kind);
        Assert.True(thirdJob.IsRetryable);

        var online = new[] { batcher.EnqueueAsync(Image(32, 0, "a")), batcher.EnqueueAsync(Image(32, 0, "b")) };
        var fifth = await Assert.ThrowsAsync<MedServeException>(() => batcher.EnqueueAsync(Image(32, 0, "c")));
        Assert.Equal(ErrorKind.Overloaded, fifth.Kind);
        Assert.Contains("max_queue_size 4", fifth.Message, StringComparison.Ordinal);
        await Task.WhenAll([running, .. jobs, .. online]);
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

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }
        Assert.True(condition());
    }
}
