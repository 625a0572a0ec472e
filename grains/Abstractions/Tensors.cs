namespace MedServe;

/// <summary>Tensor element types, named as the Open Inference Protocol (V2) names them.</summary>
public enum TensorDatatype
{
    BOOL,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    INT8,
    INT16,
    INT32,
    INT64,
    FP16,
    FP32,
    FP64,
    BYTES,
}

/// <summary>
/// A named tensor: shape plus one contiguous little-endian buffer of its elements (row-major).
/// BOOL is one byte per element. The buffer is never copied on the way through the cluster.
/// </summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.tensor")]
public sealed record Tensor(
    [property: Id(0)] string Name,
    [property: Id(1)] TensorDatatype Datatype,
    [property: Id(2)] long[] Shape,
    [property: Id(3)] byte[] Data)
{
    /// <summary>Number of elements the shape describes.</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape)
            {
                n *= d;
            }
            return n;
        }
    }

    /// <summary>Shape as text, e.g. <c>[1,30]</c>, for error messages.</summary>
    public string ShapeText => "[" + string.Join(",", Shape) + "]";
}

/// <summary>Which queue a request waits in: online requests always go before job items.</summary>
public enum RequestPriority
{
    /// <summary>Someone is waiting on this answer (HTTP V2, the grain client).</summary>
    Online = 0,
    /// <summary>An item of an async job.</summary>
    Job = 1,
}

/// <summary>
/// One inference call: inputs, which outputs are wanted (all when empty), an optional id echoed back,
/// its priority, and how long it may wait in the queue (V2 <c>parameters.timeout</c>, microseconds; 0 takes
/// the deployment's default).
/// </summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.inference-request")]
public sealed record InferenceRequest(
    [property: Id(0)] Tensor[] Inputs,
    [property: Id(1)] string[]? RequestedOutputs = null,
    [property: Id(2)] string? Id = null)
{
    [Id(3)] public RequestPriority Priority { get; init; } = RequestPriority.Online;

    [Id(4)] public long TimeoutMicroseconds { get; init; }
}

/// <summary>The answer to an <see cref="InferenceRequest"/>.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.inference-response")]
public sealed record InferenceResponse(
    [property: Id(0)] string ModelName,
    [property: Id(1)] string ModelVersion,
    [property: Id(2)] Tensor[] Outputs,
    [property: Id(3)] string? Id = null,
    [property: Id(4)] double ComputeMilliseconds = 0)
{
    /// <summary>Time the request waited in the replica's queue before its batch ran.</summary>
    [Id(5)] public double QueueMilliseconds { get; init; }

    /// <summary>Rows in the batch this request ran in (its own included).</summary>
    [Id(6)] public int BatchSize { get; init; } = 1;

    /// <summary>The replica that ran it (its grain key, <c>name/version/index/accelerator</c>).</summary>
    [Id(7)] public string? Replica { get; init; }
}
