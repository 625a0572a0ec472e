using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Silo.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Tests.Support;

/// <summary>
/// The real embedded node (Orleans silo, Kestrel on a free loopback port, ONNX Runtime), started once for
/// the collection with the repository's sample packages imported and deployed, state in a temp directory.
/// </summary>
public sealed class NodeFixture : IAsyncLifetime
{
    /// <summary>The infer body limit the node is started with, so a test can cross it cheaply.</summary>
    public const long MaxInferBytes = 4 * 1024 * 1024;

    /// <summary>The operator's admin key the node is started with (as MEDSERVE_ADMIN_KEY would set it).</summary>
    public const string AdminKey = "test-admin-key";

    private WebApplication? _app;

    public string DataDirectory { get; } = Paths.TempDirectory("node");

    /// <summary>The Orleans gateway port, for grain clients.</summary>
    public int GatewayPort { get; } = NodeProcess.FreePort();

    public HttpClient Http { get; private set; } = null!;

    public IGrainFactory Grains => _app!.Services.GetRequiredService<IGrainFactory>();

    public IServiceProvider Services => _app!.Services;

    public async Task InitializeAsync()
    {
        _app = MedServeNode.Build([
            "--urls", "http://127.0.0.1:0",
            "--data", DataDirectory,
            "--import", Paths.Samples,
            "--max-infer-bytes", MaxInferBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--gateway-port", GatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--silo-port", NodeProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--Logging:LogLevel:Default", "Warning",
            "--admin-key", AdminKey,
        ]);
        await _app.StartAsync();
        await _app.Services.GetRequiredService<NodeReadiness>().WhenReady.WaitAsync(TimeSpan.FromMinutes(2));
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    }

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        try
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>POSTs JSON and returns status and parsed body.</summary>
    public async Task<(int Status, JsonNode? Body)> PostJsonAsync(string path, object body)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        return ((int)response.StatusCode, await ReadJsonAsync(response));
    }

    public async Task<(int Status, JsonNode? Body)> PostRawAsync(string path, string body)
    {
        using var response = await Http.PostAsync(path, new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        return ((int)response.StatusCode, await ReadJsonAsync(response));
    }

    public async Task<(int Status, JsonNode? Body)> GetJsonAsync(string path)
    {
        using var response = await Http.GetAsync(path);
        return ((int)response.StatusCode, await ReadJsonAsync(response));
    }

    /// <summary>Awaits a call, asserts it succeeded and returns its JSON body.</summary>
    public static async Task<JsonNode> SuccessJsonAsync(Task<HttpResponseMessage> call)
    {
        using var response = await call;
        var body = await ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {body}");
        return body!;
    }

    public static async Task<JsonNode?> ReadJsonAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return text.Length == 0 ? null : JsonNode.Parse(text);
    }

    /// <summary>Uploads a package as multipart (manifest + model) and returns status and body.</summary>
    public async Task<(int Status, JsonNode? Body)> UploadAsync(object manifest, byte[] model, string query = "")
    {
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(manifest)), "manifest", "manifest.json" },
            { new ByteArrayContent(model), "model", "model.onnx" },
        };
        using var response = await Http.PostAsync("/api/models" + query, form);
        return ((int)response.StatusCode, await ReadJsonAsync(response));
    }

    /// <summary>Deploys and waits for the deployment to settle (Ready or Failed).</summary>
    public async Task<JsonNode> DeployAsync(string model, string version)
    {
        using var response = await Http.PutAsync($"/api/deployments/{model}/{version}?wait=true", null);
        var body = await ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"deploy {model}:{version} answered {(int)response.StatusCode}: {body}");
        return body!;
    }

    /// <summary>The node answers ready and serves a known-good request.</summary>
    public async Task AssertHealthyAsync()
    {
        var (status, _) = await GetJsonAsync("/v2/health/ready");
        Assert.Equal(200, status);
        var (inferStatus, body) = await PostJsonAsync("/v2/models/diabetes-linear/infer", new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 10 }, data = new[] { 61, 1, 25.8, 90, 280, 195.4, 55, 5, 4.9972, 90 } } },
        });
        Assert.Equal(200, inferStatus);
        Assert.InRange(Math.Abs(body!["outputs"]![0]!["data"]![0]!.GetValue<double>() - 138.2645), 0, 1e-3);
    }
}

[CollectionDefinition(Name)]
public sealed class NodeCollection : ICollectionFixture<NodeFixture>
{
    public const string Name = "embedded node";
}
