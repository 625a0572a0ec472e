using MedServe.Inference.Runtime;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace MedServe.Tests.Unit;

/// <summary>
/// The accelerator probe against the CPU build of ONNX Runtime the tests run with, and its decisions for every probe
/// outcome (the CUDA build on a machine without CUDA is <c>Processes/CudaBuildTests</c>).
/// </summary>
public sealed class AcceleratorProbeTests
{
    private static readonly CudaProbe LibraryMissing = new(true, false, "CUDA provider failed to load: libcublasLt.so.13: cannot open shared object file: No such file or directory");

    [Fact]
    public void The_cpu_build_is_probed_as_having_no_cuda_provider_and_says_how_to_get_one()
    {
        var probe = AcceleratorProbe.TryCuda();
        Assert.False(probe.InBuild);
        Assert.False(probe.Works);
        Assert.Contains("no CUDA execution provider", probe.Reason, StringComparison.Ordinal);
        Assert.Contains("-p:Accelerator=cuda", probe.Reason, StringComparison.Ordinal);
        // No CUDA provider library beside this libonnxruntime.so: the loader's answer names the file.
        Assert.EndsWith("libonnxruntime_providers_cuda.so is missing", AcceleratorProbe.WhyProviderLibraryFails(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_silo_configured_gpu_without_working_cuda_keeps_its_tag_and_reports_cpu_with_the_reason()
    {
        var cpuBuild = AcceleratorProbe.Resolve("gpu");
        Assert.Equal(("gpu", "CPUExecutionProvider", "configured"), (cpuBuild.Accelerator, cpuBuild.ExecutionProvider, cpuBuild.Source));
        Assert.Contains("no CUDA execution provider", cpuBuild.FallbackReason, StringComparison.Ordinal);

        var missingLibrary = AcceleratorProbe.Resolve("gpu", LibraryMissing);
        Assert.Equal(("gpu", "CPUExecutionProvider"), (missingLibrary.Accelerator, missingLibrary.ExecutionProvider));
        Assert.Equal(LibraryMissing.Reason, missingLibrary.FallbackReason);
    }

    [Fact]
    public void Auto_is_cpu_without_a_reason_on_the_cpu_build_and_with_one_when_a_cuda_build_fails()
    {
        var cpuBuild = AcceleratorProbe.Resolve("auto");
        Assert.Equal(("cpu", "CPUExecutionProvider"), (cpuBuild.Accelerator, cpuBuild.ExecutionProvider));
        Assert.StartsWith("probe: CPU build", cpuBuild.Source, StringComparison.Ordinal);
        Assert.Null(cpuBuild.FallbackReason);

        var failed = AcceleratorProbe.Resolve("auto", LibraryMissing);
        Assert.Equal(("cpu", "CPUExecutionProvider", "probe: CUDA execution provider did not start"), (failed.Accelerator, failed.ExecutionProvider, failed.Source));
        Assert.Equal(LibraryMissing.Reason, failed.FallbackReason);

        var works = AcceleratorProbe.Resolve("auto", new CudaProbe(true, true, null));
        Assert.Equal(("gpu", "CUDAExecutionProvider", null), (works.Accelerator, works.ExecutionProvider, works.FallbackReason));

        var cpu = AcceleratorProbe.Resolve("cpu");
        Assert.Equal(("cpu", "CPUExecutionProvider", "configured", null), (cpu.Accelerator, cpu.ExecutionProvider, cpu.Source, cpu.FallbackReason));
        Assert.Throws<ArgumentException>(() => AcceleratorProbe.Resolve("tpu"));
    }

    [Fact]
    public void The_probe_model_is_a_valid_identity_graph()
    {
        using var session = new InferenceSession(AcceleratorProbe.IdentityModel());
        using var outputs = session.Run([NamedOnnxValue.CreateFromTensor("x", new DenseTensor<float>(new[] { 42f }, [1]))]);
        Assert.Equal(42f, outputs.Single().AsTensor<float>()[0]);
    }
}
