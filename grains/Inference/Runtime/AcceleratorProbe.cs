using System.Runtime.InteropServices;
using System.Text;
using Microsoft.ML.OnnxRuntime;

namespace MedServe.Inference.Runtime;

/// <summary>
/// What a silo can run, as found by probing or as configured. <paramref name="FallbackReason"/> says why the CPU
/// execution provider runs when CUDA was asked for or probed (null when CUDA runs, or when the silo is configured cpu).
/// </summary>
public sealed record SiloCapability(string Accelerator, string ExecutionProvider, string Source, string? FallbackReason = null);

/// <summary>
/// The outcome of trying the CUDA execution provider for real: whether this ONNX Runtime build carries it, whether it
/// started, and why not.
/// </summary>
public sealed record CudaProbe(bool InBuild, bool Works, string? Reason);

/// <summary>
/// Decides a silo's accelerator: <c>gpu</c> when the CUDA execution provider of this ONNX Runtime build really starts
/// (it is appended to session options and a one-node session is created with it); <c>cpu</c> otherwise, with the
/// reason. A configured value wins for placement (an operator may tag a silo gpu); the execution provider reported is
/// always the one that will really run, and the reason says why it is not CUDA.
/// </summary>
public static class AcceleratorProbe
{
    public const string Cuda = "CUDAExecutionProvider";
    public const string Cpu = "CPUExecutionProvider";

    public static SiloCapability Resolve(string configured) => configured switch
    {
        // A cpu silo never tries CUDA: nothing to load, nothing to report.
        "cpu" => new SiloCapability("cpu", Cpu, "configured"),
        "gpu" or "auto" or "" => Resolve(configured, TryCuda()),
        _ => throw new ArgumentException($"--accelerator must be gpu, cpu or auto, not '{configured}'"),
    };

    /// <summary>
    /// The capability for a configured value (<c>gpu</c>, <c>cpu</c>, <c>auto</c>) and a probe's outcome. The fallback
    /// reason is given where CUDA was wanted and does not run: a silo configured gpu, or a probe of a CUDA build that
    /// failed. A CPU build probed by <c>auto</c> is simply a cpu silo (its source says so).
    /// </summary>
    public static SiloCapability Resolve(string configured, CudaProbe cuda)
    {
        var provider = cuda.Works ? Cuda : Cpu;
        return configured switch
        {
            "cpu" => new SiloCapability("cpu", Cpu, "configured"),
            "gpu" => new SiloCapability("gpu", provider, "configured", cuda.Works ? null : cuda.Reason),
            "auto" or "" => new SiloCapability(cuda.Works ? "gpu" : "cpu", provider,
                cuda.Works ? "probe: CUDA execution provider started"
                    : cuda.InBuild ? "probe: CUDA execution provider did not start"
                    : "probe: CPU build of ONNX Runtime (no CUDA execution provider)",
                cuda.InBuild && !cuda.Works ? cuda.Reason : null),
            _ => throw new ArgumentException($"--accelerator must be gpu, cpu or auto, not '{configured}'"),
        };
    }

    /// <summary>
    /// Tries the CUDA execution provider: appends it to session options (this loads the provider library and the CUDA
    /// libraries it links) and opens a one-node model with them (this initialises the device).
    /// </summary>
    public static CudaProbe TryCuda()
    {
        if (!OnnxModel.AvailableProviders().Contains(Cuda))
        {
            return new CudaProbe(false, false, "this ONNX Runtime build has no CUDA execution provider (the CPU package; build the silo with -p:Accelerator=cuda)");
        }
        using var options = new SessionOptions { LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL };
        try
        {
            options.AppendExecutionProvider_CUDA(0);
        }
        catch (Exception e) when (e is OnnxRuntimeException or EntryPointNotFoundException)
        {
            // ONNX Runtime's exception says only "Failed to load shared library"; the loader says which one is missing.
            return new CudaProbe(true, false, $"CUDA provider failed to load: {WhyProviderLibraryFails() ?? FirstLine(e.Message)}");
        }
        try
        {
            using var session = new InferenceSession(IdentityModel(), options);
            return new CudaProbe(true, true, null);
        }
        catch (OnnxRuntimeException e)
        {
            return new CudaProbe(true, false, $"CUDA provider loaded but could not start a session: {FirstLine(e.Message)}");
        }
    }

    /// <summary>
    /// Loads ONNX Runtime's CUDA provider library (beside the libonnxruntime.so this process loaded) as the runtime
    /// does, and returns the dynamic loader's error (<c>libcublasLt.so.13: cannot open shared object file: ...</c>),
    /// or null when it loads.
    /// </summary>
    public static string? WhyProviderLibraryFails()
    {
        string? runtime;
        try
        {
            runtime = File.ReadLines("/proc/self/maps")
                .Select(l => l.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries))
                .Where(p => p.Length == 6 && p[5].Trim().EndsWith("/libonnxruntime.so", StringComparison.Ordinal))
                .Select(p => p[5].Trim())
                .FirstOrDefault();
        }
        catch (IOException)
        {
            return null;
        }
        if (runtime is null)
        {
            return null;
        }
        var provider = Path.Combine(Path.GetDirectoryName(runtime)!, "libonnxruntime_providers_cuda.so");
        if (!File.Exists(provider))
        {
            return $"{provider} is missing";
        }
        try
        {
            NativeLibrary.Free(NativeLibrary.Load(provider));
            return null;
        }
        catch (DllNotFoundException e)
        {
            // .NET ends the message with dlerror()'s text on its own line.
            return e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        }
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    /// <summary>The smallest ONNX model: <c>y = Identity(x)</c>, x and y float[1] (ModelProto, protobuf by hand).</summary>
    public static byte[] IdentityModel()
    {
        static byte[] Tag(int field, int wire) => Varint((ulong)((field << 3) | wire));
        static byte[] Varint(ulong v)
        {
            var bytes = new List<byte>();
            do
            {
                var b = (byte)(v & 0x7F);
                v >>= 7;
                bytes.Add(v == 0 ? b : (byte)(b | 0x80));
            }
            while (v != 0);
            return [.. bytes];
        }
        static byte[] Number(int field, ulong v) => [.. Tag(field, 0), .. Varint(v)];
        static byte[] Bytes(int field, byte[] payload) => [.. Tag(field, 2), .. Varint((ulong)payload.Length), .. payload];
        static byte[] Text(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));
        static byte[] Value(string name) => [
            .. Text(1, name),                                           // ValueInfoProto.name
            .. Bytes(2, Bytes(1, [                                      // type.tensor_type
                .. Number(1, 1),                                        // elem_type FLOAT
                .. Bytes(2, Bytes(1, Number(1, 1))),                    // shape { dim { dim_value: 1 } }
            ])),
        ];
        byte[] node = [.. Text(1, "x"), .. Text(2, "y"), .. Text(4, "Identity")];
        byte[] graph = [.. Bytes(1, node), .. Text(2, "probe"), .. Bytes(11, Value("x")), .. Bytes(12, Value("y"))];
        return [.. Number(1, 8), .. Bytes(7, graph), .. Bytes(8, Number(2, 13))]; // ir_version 8, graph, opset 13
    }
}
