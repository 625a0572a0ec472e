using System.IO.Compression;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>Uploading, deploying, validating and deleting model versions over the management API.</summary>
[Collection(NodeCollection.Name)]
public sealed class ManagementApiTests(NodeFixture node)
{
    private static readonly OnnxBuilder.Io Vector = new("x", TensorDatatype.FP32, [null, 4]);

    private static void AssertProblem(int status, JsonNode? body, int expectedStatus, string expectedText, string? field = null)
    {
        Assert.True(status == expectedStatus, $"{status}: {body}");
        Assert.Contains(expectedText, body!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        if (field is not null)
        {
            Assert.Equal(field, body["field"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task A_file_that_is_not_onnx_is_refused_with_400_naming_the_model()
    {
        var (status, body) = await node.UploadAsync(Manifests.Identity("not-onnx", "1", [Vector]), "this is not a protobuf"u8.ToArray());
        AssertProblem(status, body, 400, "could not be loaded by ONNX Runtime", "model");
        Assert.Equal(404, (await node.GetJsonAsync("/api/models/not-onnx")).Status);
        await node.AssertHealthyAsync();
    }

    [Fact]
    public async Task A_manifest_that_does_not_match_the_graph_is_refused_naming_the_field()
    {
        var manifest = Manifests.Identity("mismatch", "1", [Vector]);
        ((Dictionary<string, object?>[])manifest["inputs"]!)[0]["name"] = "features";
        manifest.Remove("validation");
        var (status, body) = await node.UploadAsync(manifest, OnnxBuilder.Identity(Vector));
        AssertProblem(status, body, 400, "'features' is not in the ONNX graph", "manifest.inputs[0].name");

        manifest = Manifests.Identity("mismatch", "1", [Vector]);
        ((Dictionary<string, object?>[])manifest["inputs"]!)[0]["datatype"] = "FP64";
        (status, body) = await node.UploadAsync(manifest, OnnxBuilder.Identity(Vector));
        AssertProblem(status, body, 400, "datatype is FP64 but the graph's 'x' is FP32", "manifest.inputs[0].datatype");

        manifest = Manifests.Identity("mismatch", "1", [Vector]);
        ((Dictionary<string, object?>[])manifest["inputs"]!)[0]["shape"] = new[] { -1, 5 };
        (status, body) = await node.UploadAsync(manifest, OnnxBuilder.Identity(Vector));
        AssertProblem(status, body, 400, "does not match the graph's 'x' [-1,4]", "manifest.inputs[0].shape");
    }

    [Theory]
    [InlineData("name", "Bad Name", "manifest.name")]
    [InlineData("version", "", "manifest.version")]
    [InlineData("colour", "blue", "manifest.colour")]
    public async Task An_incomplete_or_invalid_manifest_is_refused_naming_the_field(string key, string value, string field)
    {
        var manifest = Manifests.Identity("bad-manifest", "1", [Vector]);
        manifest[key] = value;
        var (status, body) = await node.UploadAsync(manifest, OnnxBuilder.Identity(Vector));
        Assert.Equal(400, status);
        Assert.Equal(field, body!["field"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_version_is_immutable_and_a_duplicate_gets_409()
    {
        var (first, _) = await node.UploadAsync(Manifests.Identity("immutable", "1", [Vector]), OnnxBuilder.Identity(Vector));
        Assert.Equal(201, first);
        var (again, body) = await node.UploadAsync(Manifests.Identity("immutable", "1", [Vector]), OnnxBuilder.Identity(Vector));
        AssertProblem(again, body, 409, "already registered", "manifest.version");
        var other = new OnnxBuilder.Io("x", TensorDatatype.FP32, [null, 8]);
        (again, body) = await node.UploadAsync(Manifests.Identity("immutable", "1", [other]), OnnxBuilder.Identity(other));
        AssertProblem(again, body, 409, "versions are immutable", "manifest.version");
    }

    [Fact]
    public async Task Upload_as_a_zip_stores_the_artifact_by_its_sha256()
    {
        var model = OnnxBuilder.Identity(Vector);
        using var zip = new MemoryStream();
        using (var archive = new ZipArchive(zip, ZipArchiveMode.Create, leaveOpen: true))
        {
            await using (var s = archive.CreateEntry("pkg/manifest.json").Open())
            {
                await s.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(Manifests.Identity("zipped", "3", [Vector])));
            }
            await using (var s = archive.CreateEntry("pkg/model.onnx").Open())
            {
                await s.WriteAsync(model);
            }
        }
        using var content = new ByteArrayContent(zip.ToArray());
        content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        using var response = await node.Http.PostAsync("/api/models", content);
        var body = await NodeFixture.ReadJsonAsync(response);
        Assert.Equal(201, (int)response.StatusCode);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(model));
        Assert.Equal(sha, body!["sha256"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(node.DataDirectory, "artifacts", "sha256", sha[..2], sha)));

        using var broken = new ByteArrayContent([0x50, 0x4b, 0x03, 0x04, 1, 2, 3]);
        broken.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        using var brokenResponse = await node.Http.PostAsync("/api/models", broken);
        AssertProblem((int)brokenResponse.StatusCode, await NodeFixture.ReadJsonAsync(brokenResponse), 400, "not a valid zip", "package");
    }

    [Fact]
    public async Task A_version_whose_outputs_differ_from_its_validation_samples_fails_and_takes_no_traffic()
    {
        // The identity model echoes zeros; the manifest claims it returns 0.5.
        var (status, _) = await node.UploadAsync(Manifests.Identity("lying-model", "1", [Vector], expectedEcho: 0.5), OnnxBuilder.Identity(Vector));
        Assert.Equal(201, status);
        var deployment = await node.DeployAsync("lying-model", "1");
        Assert.Equal("Failed", deployment["state"]!.GetValue<string>());
        Assert.Contains("validation failed", deployment["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("max |diff| 0.5 > tolerance 0", deployment["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Empty(deployment["replicas"]!.AsArray());

        var (inferStatus, error) = await node.PostJsonAsync("/v2/models/lying-model/versions/1/infer", new
        {
            inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 1, 4 }, data = new[] { 1, 2, 3, 4 } } },
        });
        Assert.Equal(503, inferStatus);
        Assert.Contains("Failed", error!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(400, (await node.GetJsonAsync("/v2/models/lying-model/versions/1/ready")).Status);
    }

    [Fact]
    public async Task Deploy_serve_undeploy_and_delete_with_deletion_refused_while_deployed()
    {
        var (status, _) = await node.UploadAsync(Manifests.Identity("lifecycle", "1", [Vector]), OnnxBuilder.Identity(Vector));
        Assert.Equal(201, status);
        var request = new { inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 1, 4 }, data = new[] { 1, 2, 3, 4 } } } };

        // Registered but not deployed: V2 does not know it.
        Assert.Equal(404, (await node.PostJsonAsync("/v2/models/lifecycle/infer", request)).Status);

        var deployed = await node.DeployAsync("lifecycle", "1");
        Assert.Equal("Ready", deployed["state"]!.GetValue<string>());
        Assert.Equal("CPUExecutionProvider", deployed["replicas"]![0]!["execution_provider"]!.GetValue<string>());
        Assert.True(deployed["validation"]!["passed"]!.GetValue<bool>());
        Assert.Equal(200, (await node.PostJsonAsync("/v2/models/lifecycle/infer", request)).Status);

        using (var refused = await node.Http.DeleteAsync("/api/models/lifecycle/versions/1"))
        {
            AssertProblem((int)refused.StatusCode, await NodeFixture.ReadJsonAsync(refused), 409, "undeploy it before deleting");
        }

        using (var undeploy = await node.Http.DeleteAsync("/api/deployments/lifecycle/1"))
        {
            var body = await NodeFixture.ReadJsonAsync(undeploy);
            Assert.Equal(200, (int)undeploy.StatusCode);
            Assert.Equal("Unloaded", body!["state"]!.GetValue<string>());
        }
        var (afterStatus, after) = await node.PostJsonAsync("/v2/models/lifecycle/versions/1/infer", request);
        Assert.Equal(404, afterStatus);
        Assert.Contains("not deployed", after!["error"]!.GetValue<string>(), StringComparison.Ordinal);

        using (var deleted = await node.Http.DeleteAsync("/api/models/lifecycle/versions/1"))
        {
            Assert.Equal(204, (int)deleted.StatusCode);
        }
        Assert.Equal(404, (await node.GetJsonAsync("/api/models/lifecycle")).Status);
        var (_, list) = await node.GetJsonAsync("/api/models");
        Assert.DoesNotContain("lifecycle", list!.AsArray().Select(m => m!["name"]!.GetValue<string>()));
        Assert.Contains("breast-cancer-logreg", list.AsArray().Select(m => m!["name"]!.GetValue<string>()));
    }

    [Fact]
    public async Task A_call_without_a_version_goes_to_the_default_version()
    {
        foreach (var v in new[] { "1", "2" })
        {
            Assert.Equal(201, (await node.UploadAsync(Manifests.Identity("versioned", v, [Vector]), OnnxBuilder.Identity(Vector))).Status);
            await node.DeployAsync("versioned", v);
        }
        var request = new { inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 1, 4 }, data = new[] { 1, 2, 3, 4 } } } };
        var (_, latest) = await node.PostJsonAsync("/v2/models/versioned/infer", request);
        Assert.Equal("2", latest!["model_version"]!.GetValue<string>());

        using (var set = await node.Http.PutAsJsonAsync("/api/models/versioned/default", new { version = "1" }))
        {
            Assert.Equal(200, (int)set.StatusCode);
        }
        // Routes are cached per silo for a second; the explicit version is always exact.
        var (_, pinned) = await node.PostJsonAsync("/v2/models/versioned/versions/2/infer", request);
        Assert.Equal("2", pinned!["model_version"]!.GetValue<string>());
        var (_, model) = await node.GetJsonAsync("/api/models/versioned");
        Assert.Equal("1", model!["default_version"]!.GetValue<string>());
    }

    [Fact]
    public async Task Bad_deployment_specs_and_unknown_versions_get_problem_details()
    {
        using (var response = await node.Http.PutAsJsonAsync("/api/deployments/breast-cancer-logreg/1", new { replicas = 0 }))
        {
            AssertProblem((int)response.StatusCode, await NodeFixture.ReadJsonAsync(response), 400, "replicas must be between 1 and 64", "replicas");
        }
        using (var response = await node.Http.PutAsJsonAsync("/api/deployments/breast-cancer-logreg/1", new { replica = 2 }))
        {
            Assert.Equal(400, (int)response.StatusCode);
        }
        using (var response = await node.Http.PutAsync("/api/deployments/breast-cancer-logreg/9", null))
        {
            AssertProblem((int)response.StatusCode, await NodeFixture.ReadJsonAsync(response), 404, "has no version '9'");
        }
        Assert.Equal("application/problem+json", (await node.Http.GetAsync("/api/models/nope")).Content.Headers.ContentType!.MediaType);
        using (var response = await node.Http.PutAsync("/api/deployments/breast-cancer-logreg/1", new StringContent("{\"replicas\":1}", System.Text.Encoding.UTF8, "application/x-www-form-urlencoded")))
        {
            AssertProblem((int)response.StatusCode, await NodeFixture.ReadJsonAsync(response), 400, "Content-Type: application/json", "content-type");
        }
    }

    [Fact]
    public async Task Silos_are_listed_with_their_capability_and_replicas()
    {
        var (status, silos) = await node.GetJsonAsync("/api/silos");
        Assert.Equal(200, status);
        var silo = Assert.Single(silos!.AsArray());
        Assert.Equal("Active", silo!["status"]!.GetValue<string>());
        Assert.Equal("cpu", silo["accelerator"]!.GetValue<string>());
        Assert.Equal("CPUExecutionProvider", silo["execution_provider"]!.GetValue<string>());
        Assert.StartsWith("probe:", silo["accelerator_source"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains(silo["replicas"]!.AsArray(), r => r!.GetValue<string>().StartsWith("ct-mr-classifier/1/0/", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_model_card_shows_manifest_hash_and_deployment()
    {
        var (status, card) = await node.GetJsonAsync("/api/models/breast-cancer-logreg/versions/1");
        Assert.Equal(200, status);
        Assert.Equal(64, card!["version"]!["sha256"]!.GetValue<string>().Length);
        Assert.Contains("Breast Cancer Wisconsin", card["version"]!["manifest"]!["provenance"]!["training_data"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.NotEmpty(card["version"]!["manifest"]!["limitations"]!.AsArray());
        Assert.Equal("Ready", card["deployment"]!["state"]!.GetValue<string>());
    }
}
