using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Tests.Support;

/// <summary>
/// An embedded node of a test class's own (diabetes-linear imported, unless <see cref="Import"/> says more), started with extra settings (small limits), so
/// crossing a limit is cheap and never spends the shared <see cref="NodeFixture"/>'s budget.
/// </summary>
public abstract class LimitedNode : IAsyncLifetime
{
    private readonly string _data = Paths.TempDirectory("limits");
    private WebApplication _app = null!;

    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Settings as command-line pairs (<c>--MedServe:Limits:MaxJobItems 3</c>).</summary>
    protected abstract string[] Settings { get; }

    /// <summary>The package directories the node imports (comma-separated); diabetes-linear unless a node says otherwise.</summary>
    protected virtual string Import => Path.Combine(Paths.Samples, "diabetes-linear");

    public async Task InitializeAsync()
    {
        (_app, var address) = await InProcessNode.StartAsync(_data, Import, NodeProcess.FreePort(), Settings);
        BaseAddress = address;
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        try
        {
            Directory.Delete(_data, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public HttpClient Client(string? key = NodeFixture.AdminKey)
    {
        var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        return http;
    }

    /// <summary>Creates a key of <paramref name="role"/> with the admin key and returns it.</summary>
    public async Task<string> CreateKeyAsync(string role)
    {
        using var admin = Client();
        var created = await NodeFixture.SuccessJsonAsync(admin.PostAsJsonAsync("/api/keys", new { name = $"limits {role}", role }));
        return created["key"]!.GetValue<string>();
    }

    /// <summary>A known-good diabetes-linear request.</summary>
    public const string GoodInfer = """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[61,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""";

    /// <summary>The node still answers ready and serves a valid inference.</summary>
    public async Task AssertServingAsync()
    {
        using var http = Client();
        using var ready = await http.GetAsync("/v2/health/ready");
        Assert.Equal(200, (int)ready.StatusCode);
        var body = await NodeFixture.SuccessJsonAsync(http.PostAsync("/v2/models/diabetes-linear/infer", new StringContent(GoodInfer, System.Text.Encoding.UTF8, "application/json")));
        Assert.Equal("diabetes-linear", body["model_name"]!.GetValue<string>());
    }
}
