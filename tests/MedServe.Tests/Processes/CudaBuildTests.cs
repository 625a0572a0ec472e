using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Processes;

/// <summary>
/// The silo built with <c>-p:Accelerator=cuda</c> (ONNX Runtime's CUDA package; test.sh builds it) on a machine
/// without a working CUDA: it starts, serves, and says honestly that the CPU provider runs, and why.
/// </summary>
public sealed class CudaBuildTests
{
    [CudaBuildFact]
    public async Task The_cuda_build_without_cuda_reports_cpu_and_the_reason_in_api_silos()
    {
        var data = Paths.TempDirectory("cuda-build");
        try
        {
            await using var node = await NodeProcess.StartBuildAsync(CudaBuildFactAttribute.SiloAssembly, data, "none",
                NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(), "--accelerator", "gpu");
            var silo = Assert.Single((await node.Http.GetFromJsonAsync<JsonArray>("/api/silos"))!)!;
            Assert.Equal("gpu", silo["accelerator"]!.GetValue<string>());
            if (File.Exists("/dev/nvidia0") && NativeLibrary.TryLoad("libcublasLt.so.13", out var cublas))
            {
                NativeLibrary.Free(cublas);
                Assert.Equal("CUDAExecutionProvider", silo["execution_provider"]!.GetValue<string>());
                return;
            }
            Assert.Equal("CPUExecutionProvider", silo["execution_provider"]!.GetValue<string>());
            var reason = silo["execution_provider_fallback"]!.GetValue<string>();
            Assert.StartsWith("CUDA provider", reason, StringComparison.Ordinal);
            if (!NativeLibrary.TryLoad("libcublasLt.so.13", out var handle))
            {
                // The provider library links the CUDA 13 libraries: the loader's own words name the missing one.
                Assert.Equal("CUDA provider failed to load: libcublasLt.so.13: cannot open shared object file: No such file or directory", reason);
            }
            else
            {
                NativeLibrary.Free(handle);
            }
            Assert.Contains(reason, node.Output, StringComparison.Ordinal); // the start-up line says it too
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }
}

/// <summary>Runs only where the cuda build of the silo exists (test.sh builds it); skipped, saying how, elsewhere.</summary>
public sealed class CudaBuildFactAttribute : FactAttribute
{
    public CudaBuildFactAttribute()
    {
        if (!File.Exists(SiloAssembly))
        {
            Skip = $"no cuda build of the silo at {SiloAssembly}: dotnet build silo -p:Accelerator=cuda (test.sh does)";
        }
    }

    /// <summary>silo/bin/cuda/&lt;Configuration&gt;/net10.0/medserve-silo.dll, beside the cpu build the tests use.</summary>
    public static string SiloAssembly
    {
        get
        {
            var tfm = new DirectoryInfo(Path.GetDirectoryName(NodeProcess.SiloAssembly)!);
            return Path.Combine(Paths.Repo, "silo", "bin", "cuda", tfm.Parent!.Name, tfm.Name, "medserve-silo.dll");
        }
    }
}
