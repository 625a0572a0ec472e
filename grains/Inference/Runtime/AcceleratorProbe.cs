namespace MedServe.Inference.Runtime;

/// <summary>What a silo can run, as found by probing or as configured.</summary>
public sealed record SiloCapability(string Accelerator, string ExecutionProvider, string Source);

/// <summary>
/// Decides a silo's accelerator: <c>gpu</c> when this ONNX Runtime build carries the CUDA execution provider
/// and an NVIDIA device is visible; <c>cpu</c> otherwise. A configured value wins (an operator may tag a
/// silo gpu for placement); the execution provider reported is always the one that will really run.
/// </summary>
public static class AcceleratorProbe
{
    public static SiloCapability Resolve(string configured)
    {
        var cudaBuild = OnnxModel.AvailableProviders().Contains("CUDAExecutionProvider");
        var device = File.Exists("/dev/nvidia0") || (Directory.Exists("/proc/driver/nvidia/gpus") && Directory.EnumerateFileSystemEntries("/proc/driver/nvidia/gpus").Any());
        var provider = cudaBuild && device ? "CUDAExecutionProvider" : "CPUExecutionProvider";
        return configured switch
        {
            "gpu" or "cpu" => new SiloCapability(configured, configured == "cpu" ? "CPUExecutionProvider" : provider, "configured"),
            "auto" or "" => new SiloCapability(cudaBuild && device ? "gpu" : "cpu", provider,
                $"probe: CUDA provider {(cudaBuild ? "present" : "absent")} in this ONNX Runtime build, NVIDIA device {(device ? "visible" : "not visible")}"),
            _ => throw new ArgumentException($"--accelerator must be gpu, cpu or auto, not '{configured}'"),
        };
    }
}
