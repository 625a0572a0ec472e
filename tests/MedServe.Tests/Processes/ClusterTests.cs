using System.Net.Http.Json;
using System.Text.Json.Nodes;
using MedServe.Client;
using MedServe.Tests.Support;

namespace MedServe.Tests.Processes;

/// <summary>Real silo processes joined through a real redis-server: placement by tag across processes.</summary>
public sealed class ClusterTests
{
    [Fact]
    public async Task A_gpu_deployment_lands_on_the_gpu_tagged_silo_which_fetches_the_artifact_from_the_cluster()
    {
        await using var redis = await RedisProcess.StartAsync();
        var cpuData = Paths.TempDirectory("cluster-cpu");
        var gpuData = Paths.TempDirectory("cluster-gpu");
        try
        {
            await using var cpu = await NodeProcess.StartAsync(cpuData, Paths.Samples, NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(),
                "--cluster", redis.Url, "--accelerator", "cpu", "--label", "zone=a");
            await using var gpu = await NodeProcess.StartAsync(gpuData, "none", NodeProcess.FreePort(), NodeProcess.FreePort(), NodeProcess.FreePort(),
                "--cluster", redis.Url, "--accelerator", "gpu", "--label", "zone=b");

            var silos = (await NodeFixture.SuccessJsonAsync(cpu.Http.GetAsync("/api/silos"))).AsArray();
            Assert.Equal(2, silos.Count);
            var gpuSilo = silos.Single(s => s!["accelerator"]!.GetValue<string>() == "gpu")!;
            Assert.Equal("b", gpuSilo["labels"]!["zone"]!.GetValue<string>());
            Assert.Equal("configured", gpuSilo["accelerator_source"]!.GetValue<string>());

            // Re-deploy the CT/MR classifier for gpu, through the cpu silo's API.
            var deployed = await NodeFixture.SuccessJsonAsync(cpu.Http.PutAsJsonAsync("/api/deployments/ct-mr-classifier/1?wait=true", new { accelerator = "gpu" }));
            Assert.Equal("Ready", deployed["state"]!.GetValue<string>());
            Assert.Equal(gpuSilo["address"]!.GetValue<string>(), deployed["replicas"]![0]!["silo"]!.GetValue<string>());
            // The gpu silo never saw an upload: it fetched the artifact from the cluster and cached it.
            Assert.Single(Directory.GetFiles(Path.Combine(gpuData, "artifacts"), "*", SearchOption.AllDirectories));

            // Either silo's HTTP front end reaches the replica on the gpu silo.
            var images = TestData.Floats("images", "ct_mr_test_images_11x1x64x64.f32");
            foreach (var node in new[] { cpu, gpu })
            {
                var result = await NodeFixture.SuccessJsonAsync(node.Http.PostAsJsonAsync("/v2/models/ct-mr-classifier/infer", new
                {
                    inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { 1, 1, 64, 64 }, data = images.AsSpan(6 * 4096, 4096).ToArray() } },
                    outputs = new[] { new { name = "probabilities" } },
                }));
                Assert.True(result["outputs"]![0]!["data"]![1]!.GetValue<double>() > 0.99, "slice 6 is MR");
            }

            // The grain client and the CLI find the cluster through Redis membership (no gateway address given).
            await using (var client = await MedServeClient.ConnectAsync(new MedServeClientOptions { Cluster = redis.Url }))
            {
                var seen = await client.ListSilosAsync();
                Assert.Equal(2, seen.Length);
                Assert.Contains("ct-mr-classifier/1/0/gpu", seen.Single(s => s.Accelerator == "gpu").Replicas);
                var outputs = await client.InferAsync<float>("ct-mr-classifier", "image", [1, 1, 64, 64], images.AsMemory(6 * 4096, 4096));
                Assert.True(outputs["probabilities"].AsSpan<float>()[1] > 0.99f, "slice 6 is MR (grain client)");
            }
            var status = (await CliRun.RunAsync("--cluster", redis.Url, "--json", "status", "ct-mr-classifier", "1")).Json();
            Assert.Equal(gpuSilo["address"]!.GetValue<string>(), status["replicas"]![0]!["silo"]!.GetValue<string>());
            var cliSilos = await CliRun.RunAsync("--cluster", redis.Url, "silos");
            Assert.True(cliSilos.Code == 0, cliSilos.ToString());
            Assert.Matches(@"(?m)^\S+\s+\S+\s+Active\s+gpu\s+CPUExecutionProvider\s+zone=b\s+ct-mr-classifier/1/0/gpu", cliSilos.Out);
            var wrongId = await CliRun.RunAsync("--cluster", redis.Url, "--cluster-id", "another", "--connect-timeout", "3", "silos");
            Assert.True(wrongId.Code == 5, wrongId.ToString());
        }
        finally
        {
            Directory.Delete(cpuData, recursive: true);
            Directory.Delete(gpuData, recursive: true);
        }
    }
}
