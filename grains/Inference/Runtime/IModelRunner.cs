namespace MedServe.Inference.Runtime;

/// <summary>
/// What a <see cref="DynamicBatcher"/> needs of a model: its checks, whether requests stack, and one run.
/// <see cref="OnnxModel"/> is the real one (an ONNX Runtime session); tests give the batcher a runner of their own.
/// </summary>
public interface IModelRunner : IDisposable
{
    ModelManifest Manifest { get; }

    /// <summary>Requests may be stacked along the first dimension into one run and the outputs split back by rows.</summary>
    bool Batchable { get; }

    /// <summary>Names of all the model's outputs.</summary>
    IReadOnlyList<string> OutputNames { get; }

    /// <summary>Checks a request before it is queued; throws an <see cref="ErrorKind.InvalidInput"/> <see cref="MedServeException"/>.</summary>
    void Validate(InferenceRequest request);

    /// <summary>
    /// Runs validated inputs (one request, or a stacked batch whose pooled buffers may be longer than the shape's
    /// bytes). Failures are <see cref="MedServeException"/>s: <see cref="ErrorKind.InvalidInput"/> when the model refused
    /// the input (a batch is then split to find the requests at fault), <see cref="ErrorKind.Unavailable"/> when the
    /// runtime failed through no fault of the input (every request of the batch gets it; none is blamed).
    /// </summary>
    (Tensor[] Outputs, TimeSpan Elapsed) RunValidated(Tensor[] inputs, IReadOnlyList<string> outputNames);
}
