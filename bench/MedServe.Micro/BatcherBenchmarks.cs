using BenchmarkDotNet.Attributes;
using MedServe.Inference.Runtime;

namespace MedServe.Micro;

/// <summary>
/// The dynamic batcher's own cost: enqueue a request, dispatch it, run it on a model that answers at once, split the
/// answer back and complete the caller's task. The model does nothing (<see cref="InstantRunner"/>), so what is left is
/// the queue, the dispatch loop's wake-up and the thread hops. One caller at a time (a lone request runs at once, no
/// queue delay) and eight at once (one full batch of the default policy: eight rows).
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 5)]
public class BatcherBenchmarks
{
    private const int Concurrent = 8;

    private readonly InferenceRequest _request = new([TensorTypes.Create<float>("x", [1, 2], [0.5f, 0.25f])]);
    private readonly Task<InferenceResponse>[] _tasks = new Task<InferenceResponse>[Concurrent];
    private DynamicBatcher _batcher = null!;

    [GlobalSetup]
    public void Setup() => _batcher = new DynamicBatcher(new InstantRunner(), new BatchingPolicy(), executors: 1, replica: "bench/1/0");

    [GlobalCleanup]
    public void Cleanup() => _batcher.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark]
    public Task<InferenceResponse> EnqueueToAnswer() => _batcher.EnqueueAsync(_request);

    [Benchmark(OperationsPerInvoke = Concurrent)]
    public async Task EnqueueToAnswerEightAtOnce()
    {
        for (var i = 0; i < Concurrent; i++)
        {
            _tasks[i] = _batcher.EnqueueAsync(_request);
        }
        await Task.WhenAll(_tasks);
    }
}

/// <summary>A model of input <c>x</c> [N, 2] FP32 that answers every run at once with zeros as <c>y</c> [N, 2] FP32.</summary>
public sealed class InstantRunner : IModelRunner
{
    public ModelManifest Manifest { get; } = new()
    {
        Name = "bench",
        Version = "1",
        Inputs = [new TensorSpec { Name = "x", Datatype = TensorDatatype.FP32, Shape = [-1, 2] }],
        Outputs = [new TensorSpec { Name = "y", Datatype = TensorDatatype.FP32, Shape = [-1, 2] }],
    };

    public bool Batchable => true;

    public IReadOnlyList<string> OutputNames { get; } = ["y"];

    public void Validate(InferenceRequest request)
    {
        if (request.Inputs is not [{ Name: "x", Datatype: TensorDatatype.FP32, Shape: [> 0, 2] }])
        {
            throw MedServeException.Invalid("the bench model takes x [N, 2] FP32", "x");
        }
    }

    public (Tensor[] Outputs, TimeSpan Elapsed) RunValidated(Tensor[] inputs, IReadOnlyList<string> outputNames)
    {
        var rows = inputs[0].Shape[0];
        return ([new Tensor("y", TensorDatatype.FP32, [rows, 2], new byte[rows * 2 * sizeof(float)])], TimeSpan.Zero);
    }

    public void Dispose()
    {
    }
}
