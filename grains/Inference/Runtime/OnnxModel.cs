using System.Buffers;
using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace MedServe.Inference.Runtime;

/// <summary>How sessions are made on this silo.</summary>
public sealed record RuntimeOptions
{
    /// <summary><c>gpu</c> tries the CUDA execution provider first; <c>cpu</c> never does; <c>any</c> prefers gpu.</summary>
    public string Accelerator { get; init; } = "any";

    /// <summary>The silo's probe started the CUDA execution provider (<see cref="AcceleratorProbe.TryCuda"/>): sessions may append it.</summary>
    public bool CudaWorks { get; init; }

    /// <summary>
    /// ONNX Runtime intra-op threads per session. Requests run concurrently on the silo's execution pool (cores over
    /// this many threads: <see cref="ExecutionPool.ForCores"/>), so 1 keeps cores for them.
    /// </summary>
    public int IntraOpThreads { get; init; } = 1;
}

/// <summary>An input or output as the ONNX graph declares it (-1 for a dynamic dimension).</summary>
public sealed record GraphTensor(string Name, TensorDatatype Datatype, long[] Shape)
{
    public string ShapeText => "[" + string.Join(",", Shape) + "]";
}

/// <summary>
/// One ONNX Runtime session and the checks that stand before it: every request is validated against the
/// graph's real inputs (names, datatypes, ranks, fixed dimensions) and the manifest (non-finite values), so
/// bad input answers with a message instead of a native error. Thread-safe: ONNX Runtime sessions are.
/// </summary>
public sealed class OnnxModel : IModelRunner
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new() { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
    private readonly Dictionary<string, GraphTensor> _inputs;
    private readonly Dictionary<string, TensorSpec> _manifestInputs;
    private readonly string[] _allOutputs;

    private OnnxModel(InferenceSession session, ModelManifest manifest, string executionProvider)
    {
        _session = session;
        Manifest = manifest;
        ExecutionProvider = executionProvider;
        Inputs = Describe(session.InputMetadata);
        Outputs = Describe(session.OutputMetadata);
        _inputs = Inputs.ToDictionary(i => i.Name, StringComparer.Ordinal);
        _manifestInputs = manifest.Inputs.ToDictionary(i => i.Name, StringComparer.Ordinal);
        _allOutputs = [.. Outputs.Select(o => o.Name)];
        Batchable = SharesBatchDimension(session);
    }

    /// <summary>
    /// Stacking requests is safe only when every input and output has a dynamic first dimension with one and the same
    /// symbolic name (as exporters write it: <c>batch</c>). A first dimension that is merely dynamic may depend on the
    /// data (detections, a reduction over rows); splitting it back by rows would hand answers to the wrong callers.
    /// </summary>
    private static bool SharesBatchDimension(InferenceSession session)
    {
        var all = session.InputMetadata.Values.Concat(session.OutputMetadata.Values).ToList();
        if (all.Any(m => m.Dimensions.Length == 0 || m.Dimensions[0] > 0))
        {
            return false;
        }
        var names = all.Select(m => m.SymbolicDimensions.Length > 0 ? m.SymbolicDimensions[0] : "").Distinct(StringComparer.Ordinal).ToList();
        return names is [{ Length: > 0 }];
    }

    public ModelManifest Manifest { get; }

    /// <summary>The execution provider that really runs this session (CUDAExecutionProvider or CPUExecutionProvider).</summary>
    public string ExecutionProvider { get; }

    public IReadOnlyList<GraphTensor> Inputs { get; }

    public IReadOnlyList<GraphTensor> Outputs { get; }

    /// <summary>Execution providers this build of ONNX Runtime carries.</summary>
    public static IReadOnlyList<string> AvailableProviders() => OrtEnv.Instance().GetAvailableProviders();

    /// <summary>Opens a model; a file that is not ONNX is invalid input, not a crash.</summary>
    public static OnnxModel Load(byte[] onnx, ModelManifest manifest, RuntimeOptions options)
    {
        var sessionOptions = new SessionOptions
        {
            IntraOpNumThreads = Math.Max(1, options.IntraOpThreads),
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            // ONNX Runtime's own log lines can quote input values: keep them out of every log.
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL,
        };
        // Idle sessions must not spin on cores that other requests need.
        sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        var provider = "CPUExecutionProvider";
        // Only when the silo's probe started CUDA: a CUDA build without the CUDA libraries would fail (and log) on
        // every load, and the CPU build has no CUDA entry point at all.
        if (options.Accelerator is "gpu" or "any" && options.CudaWorks)
        {
            try
            {
                sessionOptions.AppendExecutionProvider_CUDA(0);
                provider = "CUDAExecutionProvider";
            }
            catch (OnnxRuntimeException)
            {
                // The device went away since the probe: the CPU provider runs it, and says so.
            }
        }
        try
        {
            var session = new InferenceSession(onnx, sessionOptions);
            return new OnnxModel(session, manifest, provider);
        }
        catch (OnnxRuntimeException e)
        {
            throw MedServeException.Invalid($"model.onnx could not be loaded by ONNX Runtime: {FirstLine(e.Message)}", "model");
        }
        finally
        {
            sessionOptions.Dispose();
        }
    }

    /// <summary>Reads an ONNX graph's inputs and outputs (loads and frees a session).</summary>
    public static (IReadOnlyList<GraphTensor> Inputs, IReadOnlyList<GraphTensor> Outputs) ReadSignature(byte[] onnx)
    {
        using var model = Load(onnx, new ModelManifest(), new RuntimeOptions { Accelerator = "cpu" });
        return (model.Inputs, model.Outputs);
    }

    /// <summary>Checks a request against the graph and the manifest; throws <see cref="MedServeException"/> naming the input.</summary>
    public void Validate(InferenceRequest request)
    {
        if (request.Inputs.Length == 0)
        {
            throw MedServeException.Invalid("the request has no inputs", "inputs");
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Inputs.Length; i++)
        {
            var t = request.Inputs[i];
            if (!_inputs.TryGetValue(t.Name, out var spec))
            {
                // The caller's name may carry anything, patient data included: name its position, and the model's own inputs.
                throw MedServeException.Invalid($"inputs[{i}] is not an input of {Manifest.Name}; it takes {string.Join(", ", _inputs.Keys.Select(k => $"'{k}'"))}", $"inputs[{i}]");
            }
            if (!seen.Add(t.Name))
            {
                throw MedServeException.Invalid($"input '{t.Name}' is given twice", t.Name);
            }
            if (t.Datatype != spec.Datatype)
            {
                throw MedServeException.Invalid($"input '{t.Name}' must be {spec.Datatype}, got {t.Datatype}", t.Name);
            }
            if (t.Shape.Length != spec.Shape.Length)
            {
                throw MedServeException.Invalid($"input '{t.Name}' must have shape {spec.ShapeText} (rank {spec.Shape.Length}), got {t.ShapeText}", t.Name);
            }
            for (var d = 0; d < spec.Shape.Length; d++)
            {
                if (t.Shape[d] < 1 || (spec.Shape[d] > 0 && t.Shape[d] != spec.Shape[d]))
                {
                    throw MedServeException.Invalid($"input '{t.Name}' must have shape {spec.ShapeText}, got {t.ShapeText}", t.Name);
                }
            }
            var expectedBytes = t.ElementCount * t.Datatype.ElementSize();
            if (t.Data.Length != expectedBytes)
            {
                throw MedServeException.Invalid($"input '{t.Name}' has {t.Data.Length} bytes of data but shape {t.ShapeText} of {t.Datatype} needs {expectedBytes}", t.Name);
            }
            if (t.Datatype.IsFloat() && !(_manifestInputs.TryGetValue(t.Name, out var m) && m.AllowNonFinite))
            {
                var bad = FirstNonFinite(t);
                if (bad >= 0)
                {
                    throw MedServeException.Invalid($"input '{t.Name}' has a NaN or infinite value at element {bad}; this model does not accept missing values", t.Name);
                }
            }
        }
        foreach (var name in _inputs.Keys)
        {
            if (!seen.Contains(name))
            {
                throw MedServeException.Invalid($"input '{name}' is missing", name);
            }
        }
        if (request.RequestedOutputs is { } requested)
        {
            for (var i = 0; i < requested.Length; i++)
            {
                if (!_allOutputs.Contains(requested[i], StringComparer.Ordinal))
                {
                    throw MedServeException.Invalid($"outputs[{i}] is not an output of {Manifest.Name}; it gives {string.Join(", ", _allOutputs.Select(k => $"'{k}'"))}", $"outputs[{i}]");
                }
            }
        }
    }

    private static long FirstNonFinite(Tensor t)
    {
        switch (t.Datatype)
        {
            case TensorDatatype.FP32:
                return FirstWithAllBitsOf(MemoryMarshal.Cast<byte, uint>(t.Data), 0x7F80_0000u);
            case TensorDatatype.FP64:
                return FirstWithAllBitsOf(MemoryMarshal.Cast<byte, ulong>(t.Data), 0x7FF0_0000_0000_0000ul);
            default:
                for (long i = 0; i < t.ElementCount; i++) { if (!double.IsFinite(t.GetDouble(i))) { return i; } }
                return -1;
        }
    }

    /// <summary>
    /// The first element whose exponent bits are all set (<paramref name="exponent"/>: an IEEE float's NaN or infinity),
    /// or -1. Vectorised: an image's validation reads thousands of values per request.
    /// </summary>
    private static long FirstWithAllBitsOf<T>(ReadOnlySpan<T> bits, T exponent)
        where T : unmanaged, IBinaryInteger<T>
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated && bits.Length >= Vector256<T>.Count)
        {
            var mask = Vector256.Create(exponent);
            for (; i <= bits.Length - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var v = Vector256.Create(bits.Slice(i, Vector256<T>.Count));
                if (Vector256.EqualsAny(v & mask, mask))
                {
                    break; // the scalar loop below names the element
                }
            }
        }
        for (; i < bits.Length; i++)
        {
            if ((bits[i] & exponent) == exponent)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>
    /// True when every input and output shares one named dynamic first dimension, so requests can be stacked along
    /// it into one run and the outputs split back row by row.
    /// </summary>
    public bool Batchable { get; }

    /// <summary>Names of all the graph's outputs.</summary>
    public IReadOnlyList<string> OutputNames => _allOutputs;

    /// <summary>
    /// Runs inputs that have passed <see cref="Validate"/> (one request, or a stacked batch) and records the run's
    /// compute time and rows. ONNX Runtime errors become <see cref="MedServeException"/> without its text.
    /// </summary>
    public (Tensor[] Outputs, TimeSpan Elapsed) RunValidated(Tensor[] inputs, IReadOnlyList<string> outputNames) =>
        Run(inputs, outputNames, record: true);

    /// <summary>
    /// Runs the graph on zeros, at one row and at <paramref name="maxBatch"/> rows when it batches, before the replica
    /// takes traffic: ONNX Runtime's first runs (memory arenas, kernel set-up, a GPU provider's tuning) cost several times
    /// a steady one, and the first callers should not pay for them. Not recorded in the metrics. Returns false, having
    /// run nothing or part, for a graph whose shapes cannot be guessed (a dynamic dimension past the first, BYTES) or
    /// that refuses zeros; the replica serves either way.
    /// </summary>
    public bool WarmUp(int maxBatch)
    {
        if (Inputs.Any(i => i.Datatype == TensorDatatype.BYTES || i.Shape.Skip(1).Any(d => d < 0)))
        {
            return false;
        }
        int[] sizes = Batchable && maxBatch > 1 ? [1, maxBatch] : [1];
        foreach (var rows in sizes)
        {
            var inputs = Inputs.Select(i =>
            {
                var shape = (long[])i.Shape.Clone();
                if (shape.Length > 0 && shape[0] < 0)
                {
                    shape[0] = rows;
                }
                var elements = shape.Aggregate(1L, (n, d) => n * d);
                return new Tensor(i.Name, i.Datatype, shape, new byte[elements * i.Datatype.ElementSize()]);
            }).ToArray();
            try
            {
                Run(inputs, _allOutputs, record: false);
            }
            catch (MedServeException)
            {
                return false;
            }
        }
        return true;
    }

    private (Tensor[] Outputs, TimeSpan Elapsed) Run(Tensor[] inputs, IReadOnlyList<string> outputNames, bool record)
    {
        var started = Stopwatch.GetTimestamp();
        var n = inputs.Length;
        var names = new string[n];
        var values = new OrtValue[n];
        var pins = new MemoryHandle[n];
        try
        {
            for (var i = 0; i < n; i++)
            {
                var t = inputs[i];
                names[i] = t.Name;
                pins[i] = t.Data.AsMemory().Pin();
                unsafe
                {
                    // The shape's byte length, not the buffer's: a stacked batch runs over a pooled buffer that may be longer.
                    values[i] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, ToOrt(t.Datatype), t.Shape, (nint)pins[i].Pointer, t.ElementCount * t.Datatype.ElementSize());
                }
            }
            using var results = _session.Run(_runOptions, names, values, outputNames);
            var outputs = new Tensor[outputNames.Count];
            var k = 0;
            foreach (var value in results)
            {
                var info = value.GetTensorTypeAndShape();
                outputs[k] = new Tensor(outputNames[k], FromOrt(info.ElementDataType, outputNames[k]), info.Shape, value.GetTensorMutableRawData().ToArray());
                k++;
            }
            var elapsed = Stopwatch.GetElapsedTime(started);
            if (record)
            {
                InferenceMetrics.RecordCompute(Manifest.Name, Manifest.Version, elapsed, inputs[0].Shape.Length > 0 ? inputs[0].Shape[0] : 1);
            }
            return (outputs, elapsed);
        }
        catch (OnnxRuntimeException e)
        {
            // ONNX Runtime's text may quote input values: it is never passed on, only its code and a cause of our own.
            var (kind, code, cause) = Classify(e.Message);
            var name = $"{Manifest.Name}:{Manifest.Version}";
            throw kind switch
            {
                ErrorKind.InvalidInput => MedServeException.Invalid($"{name} rejected the input values (ONNX Runtime {code})"),
                ErrorKind.Unavailable => MedServeException.Unavailable($"{name} could not run the request just now (ONNX Runtime {code}: {cause}); the input is not at fault"),
                _ => new MedServeException(ErrorKind.Internal, $"{name} failed to run (ONNX Runtime {code})"),
            };
        }
        finally
        {
            for (var i = 0; i < n; i++)
            {
                values[i]?.Dispose();
                pins[i].Dispose();
            }
        }
    }

    public void Dispose()
    {
        _session.Dispose();
        _runOptions.Dispose();
    }

    private static GraphTensor[] Describe(IReadOnlyDictionary<string, NodeMetadata> metadata) =>
        [.. metadata.Select(kv => new GraphTensor(
            kv.Key,
            kv.Value.IsTensor ? FromOrt(kv.Value.ElementDataType, kv.Key) : throw MedServeException.Invalid($"graph value '{kv.Key}' is not a tensor ({kv.Value.OnnxValueType}); only tensors are served", "model"),
            [.. kv.Value.Dimensions.Select(d => d > 0 ? (long)d : -1L)]))];

    public static TensorElementType ToOrt(TensorDatatype datatype) => datatype switch
    {
        TensorDatatype.BOOL => TensorElementType.Bool,
        TensorDatatype.UINT8 => TensorElementType.UInt8,
        TensorDatatype.UINT16 => TensorElementType.UInt16,
        TensorDatatype.UINT32 => TensorElementType.UInt32,
        TensorDatatype.UINT64 => TensorElementType.UInt64,
        TensorDatatype.INT8 => TensorElementType.Int8,
        TensorDatatype.INT16 => TensorElementType.Int16,
        TensorDatatype.INT32 => TensorElementType.Int32,
        TensorDatatype.INT64 => TensorElementType.Int64,
        TensorDatatype.FP16 => TensorElementType.Float16,
        TensorDatatype.FP32 => TensorElementType.Float,
        TensorDatatype.FP64 => TensorElementType.Double,
        _ => throw MedServeException.Invalid($"datatype {datatype} is not supported"),
    };

    private static TensorDatatype FromOrt(TensorElementType type, string name) => type switch
    {
        TensorElementType.Bool => TensorDatatype.BOOL,
        TensorElementType.UInt8 => TensorDatatype.UINT8,
        TensorElementType.UInt16 => TensorDatatype.UINT16,
        TensorElementType.UInt32 => TensorDatatype.UINT32,
        TensorElementType.UInt64 => TensorDatatype.UINT64,
        TensorElementType.Int8 => TensorDatatype.INT8,
        TensorElementType.Int16 => TensorDatatype.INT16,
        TensorElementType.Int32 => TensorDatatype.INT32,
        TensorElementType.Int64 => TensorDatatype.INT64,
        TensorElementType.Float16 => TensorDatatype.FP16,
        TensorElementType.Float => TensorDatatype.FP32,
        TensorElementType.Double => TensorDatatype.FP64,
        _ => throw MedServeException.Invalid($"tensor '{name}' has element type {type}, which this server does not serve", "model"),
    };

    /// <summary>Texts of ONNX Runtime's own errors that say a resource ran out, not that the input was wrong.</summary>
    private static readonly string[] OutOfMemory =
    [
        "Failed to allocate memory", "Available memory of", "bad_alloc", "bad allocation", "out of memory",
        "Cannot allocate memory", "cudaErrorMemoryAllocation",
    ];

    /// <summary>Texts of execution provider failures (CUDA, cuDNN, cuBLAS, TensorRT): the device, not the input.</summary>
    private static readonly string[] ProviderFailure =
    [
        "CUDA failure", "CUDA error", "CUDNN failure", "CUDNN error", "CUBLAS failure", "CUBLAS error", "cudaError",
        "CUFFT failure", "CURAND failure", "NCCL failure", "[TensorRT EP]", "TensorRT EP failed",
    ];

    /// <summary>
    /// What an ONNX Runtime error in a run means for the caller (the text is only read, never passed on). Names,
    /// types, shapes and values were checked before the run, so what is left is either the graph refusing the input
    /// (a Gather index out of range, a Reshape that does not fit: <see cref="ErrorKind.InvalidInput"/>, bisected in a
    /// batch) or the runtime failing (memory, an execution provider, the session: <see cref="ErrorKind.Unavailable"/>,
    /// 503 and retry). The code alone does not tell them apart: ONNX Runtime 1.31 reports both a Reshape that does
    /// not fit and an allocation that fails as <c>Fail</c> (a check that throws inside a kernel), so a <c>Fail</c>
    /// is the runtime's only when its text says memory or a device gave out. <c>RuntimeException</c> (a C++
    /// exception that reached the API, e.g. <c>std::bad_alloc</c>), <c>EngineError</c> and the execution provider
    /// code (native <c>ORT_EP_FAIL</c> = 11, which the .NET enum still names <c>ShapeInferenceNotRegistered</c>) are
    /// the runtime's. <c>NotImplemented</c> (no kernel for this case) will not pass by retrying: a server error.
    /// </summary>
    public static (ErrorKind Kind, string Code, string Cause) Classify(string ortMessage)
    {
        var code = ErrorCodeOf(ortMessage);
        var outOfMemory = Array.Exists(OutOfMemory, m => ortMessage.Contains(m, StringComparison.OrdinalIgnoreCase));
        var provider = Array.Exists(ProviderFailure, m => ortMessage.Contains(m, StringComparison.OrdinalIgnoreCase))
            || code is "ShapeInferenceNotRegistered" or "EPFail" or "11";
        var cause = outOfMemory ? "out of memory" : provider ? "execution provider error" : "runtime error";
        return code switch
        {
            "InvalidArgument" or "InvalidGraph" => (ErrorKind.InvalidInput, code, "the graph refused the input"),
            "NotImplemented" => (ErrorKind.Internal, code, "not implemented"),
            "Fail" when !outOfMemory && !provider => (ErrorKind.InvalidInput, code, "the graph refused the input"),
            _ => (ErrorKind.Unavailable, code, cause),
        };
    }

    /// <summary>The code ONNX Runtime puts first in its messages (<c>[ErrorCode:InvalidArgument] ...</c>).</summary>
    private static string ErrorCodeOf(string message)
    {
        const string prefix = "[ErrorCode:";
        var end = message.IndexOf(']', StringComparison.Ordinal);
        return message.StartsWith(prefix, StringComparison.Ordinal) && end > prefix.Length ? message[prefix.Length..end] : "Unknown";
    }

    private static string FirstLine(string message)
    {
        var nl = message.IndexOf('\n', StringComparison.Ordinal);
        return (nl < 0 ? message : message[..nl]).Trim();
    }
}
