using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using MedServe.Silo.Hosting;
using MedServe.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MedServe.Tests.Api;

/// <summary>
/// Every endpoint and page against every kind of caller: no key, a wrong key, a revoked key, an expired key, and a key
/// of each role. A real node (in process) whose clock the test controls, so a key really expires.
/// </summary>
public sealed class SecurityTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _clock = new(DateTimeOffset.UtcNow);
    private readonly string _data = Paths.TempDirectory("security");
    private WebApplication _app = null!;
    private Uri _base = null!;

    public async Task InitializeAsync()
    {
        _app = MedServeNode.Build(
            ["--urls", "http://127.0.0.1:0", "--data", _data, "--import", Path.Combine(Paths.Samples, "diabetes-linear"),
             "--silo-port", NodeProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--gateway-port", NodeProcess.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture),
             "--admin-key", NodeFixture.AdminKey, "--Logging:LogLevel:Default", "Warning"],
            services => services.AddSingleton<TimeProvider>(_clock));
        await _app.StartAsync();
        await _app.Services.GetRequiredService<NodeReadiness>().WhenReady.WaitAsync(TimeSpan.FromMinutes(2));
        _base = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Directory.Delete(_data, recursive: true);
    }

    private HttpClient Client(string? key)
    {
        var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = _base };
        if (key is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        return http;
    }

    private async Task<string> CreateKeyAsync(string role, DateTimeOffset? expires = null)
    {
        using var admin = Client(NodeFixture.AdminKey);
        var created = await NodeFixture.SuccessJsonAsync(admin.PostAsJsonAsync("/api/keys", new { name = $"test {role}", role, expires_at = expires }));
        var key = created["key"]!.GetValue<string>();
        Assert.StartsWith("msk_", key, StringComparison.Ordinal);
        return key;
    }

    /// <summary>(method, path, body, what it needs: a permission, "anonymous", or the deploy-or-scale pair).</summary>
    private static readonly (string Method, string Path, string? Body, string Needs)[] Endpoints =
    [
        ("GET", "/v2/health/live", null, "anonymous"),
        ("GET", "/v2/health/ready", null, "anonymous"),
        ("GET", "/metrics", null, "anonymous"),
        ("GET", "/signin", null, "anonymous"),
        ("GET", "/v2", null, Permissions.View),
        ("GET", "/v2/models/diabetes-linear", null, Permissions.View),
        ("GET", "/v2/models/diabetes-linear/ready", null, Permissions.View),
        ("POST", "/v2/models/diabetes-linear/infer", """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[61,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""", Permissions.Infer),
        ("GET", "/api/models", null, Permissions.View),
        ("GET", "/api/models/diabetes-linear", null, Permissions.View),
        ("GET", "/api/models/diabetes-linear/versions/1", null, Permissions.View),
        ("POST", "/api/models", "{}", Permissions.ManageModels),
        ("DELETE", "/api/models/no-such-model/versions/1", null, Permissions.ManageModels),
        ("PUT", "/api/models/no-such-model/default", """{"version":"1"}""", Permissions.ManageModels),
        ("GET", "/api/deployments", null, Permissions.View),
        ("GET", "/api/deployments/diabetes-linear/1", null, Permissions.View),
        ("PUT", "/api/deployments/no-such-model/1", "{}", "deploy-or-scale"),
        ("DELETE", "/api/deployments/no-such-model/1", null, Permissions.ManageModels),
        ("GET", "/api/silos", null, Permissions.View),
        ("GET", "/api/jobs", null, Permissions.Infer),
        ("POST", "/api/jobs", "{}", Permissions.Infer),
        ("GET", "/api/jobs/no-such-job", null, Permissions.Infer),
        ("GET", "/api/keys", null, Permissions.Admin),
        ("POST", "/api/keys", """{"name":"","role":"viewer"}""", Permissions.Admin),
        ("DELETE", "/api/keys/000000000000", null, Permissions.Admin),
        ("GET", "/api/admin/data-protection/keys", null, Permissions.Admin),
        ("POST", "/api/admin/data-protection/rotate", null, Permissions.Admin),
        ("GET", "/openapi/management.json", null, Permissions.View),
        ("GET", "/api-reference", null, Permissions.View),
        ("GET", "/orleans/", null, Permissions.Operate),
        ("GET", "/", null, Permissions.View),
        ("GET", "/models/diabetes-linear/versions/1", null, Permissions.View),
        ("GET", "/cluster", null, Permissions.View),
        ("GET", "/latency", null, Permissions.View),
        ("GET", "/upload", null, Permissions.ManageModels),
        ("GET", "/try", null, Permissions.Infer),
        ("GET", "/jobs", null, Permissions.Infer),
        ("GET", "/keys", null, Permissions.Admin),
    ];

    /// <summary>Pages people open in a browser (the app's, the API reference, the Orleans Dashboard): without a key they send you to sign in.</summary>
    private static bool IsPage(string path) => path is "/api-reference" or "/orleans/"
        || (!path.StartsWith("/api", StringComparison.Ordinal) && !path.StartsWith("/v2", StringComparison.Ordinal)
            && !path.StartsWith("/openapi", StringComparison.Ordinal) && path is not "/metrics" and not "/signin");

    private static async Task<HttpResponseMessage> SendAsync(HttpClient http, string method, string path, string? body)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }
        return await http.SendAsync(request);
    }

    [Fact]
    public async Task Every_endpoint_and_page_answers_each_caller_by_its_key_and_role()
    {
        var keys = new Dictionary<string, string>();
        foreach (var role in Roles.All)
        {
            keys[role] = await CreateKeyAsync(role);
        }
        var revoked = await CreateKeyAsync(Roles.Admin);
        using (var admin = Client(NodeFixture.AdminKey))
        {
            var id = ApiKeys.IdOf(revoked)!;
            Assert.Equal(HttpStatusCode.OK, (await admin.DeleteAsync($"/api/keys/{id}")).StatusCode);
        }
        var expiring = await CreateKeyAsync(Roles.Admin, _clock.GetUtcNow().AddHours(1));
        _clock.Advance(TimeSpan.FromHours(2));

        var failures = new List<string>();
        void Check(bool ok, string what)
        {
            if (!ok)
            {
                failures.Add(what);
            }
        }

        foreach (var (method, path, body, needs) in Endpoints)
        {
            // Callers that are not let in.
            foreach (var (who, key) in new[] { ("no key", (string?)null), ("a wrong key", "msk_0123456789ab_not-a-real-secret-at-all"), ("a revoked key", revoked), ("an expired key", expiring), ("a non-MedServe key", "hello") })
            {
                using var http = Client(key);
                using var response = await SendAsync(http, method, path, body);
                var status = (int)response.StatusCode;
                if (needs == "anonymous")
                {
                    Check(status == 200 || (path == "/v2/health/ready" && status == 400), $"{method} {path} with {who}: {status}, expected 200");
                }
                else if (key is null && IsPage(path))
                {
                    Check(status == 302 && response.Headers.Location?.ToString().Contains("/signin", StringComparison.Ordinal) == true, $"{method} {path} with {who}: {status} {response.Headers.Location}, expected a redirect to /signin");
                }
                else
                {
                    Check(status == 401, $"{method} {path} with {who}: {status}, expected 401");
                }
            }
            // Each role: in when its permissions cover the endpoint, 403 otherwise.
            foreach (var role in Roles.All)
            {
                using var http = Client(keys[role]);
                using var response = await SendAsync(http, method, path, body);
                var status = (int)response.StatusCode;
                var permissions = Roles.PermissionsOf(role);
                var allowed = needs switch
                {
                    "anonymous" => true,
                    "deploy-or-scale" => permissions.Contains(Permissions.ManageModels) || permissions.Contains(Permissions.Operate),
                    _ => permissions.Contains(needs),
                };
                Check(allowed ? status is not (401 or 403) and < 500 : status == 403, $"{method} {path} as {role}: {status}, expected {(allowed ? "in (not 401/403, no 5xx)" : "403")}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public async Task Keys_are_shown_once_stored_hashed_and_revocation_takes_effect()
    {
        var key = await CreateKeyAsync(Roles.Viewer);
        using var admin = Client(NodeFixture.AdminKey);
        var listed = await admin.GetStringAsync("/api/keys");
        Assert.DoesNotContain(key, listed, StringComparison.Ordinal);
        Assert.DoesNotContain(ApiKeys.Hash(key), listed, StringComparison.Ordinal);
        Assert.Contains(ApiKeys.IdOf(key)!, listed, StringComparison.Ordinal);
        // The stored state holds the hash, never the key. (Not the temporary files a write is filling now, e.g. the
        // audit trail's: they are renamed over the files read here.)
        var stored = string.Join("\n", Directory.EnumerateFiles(_data, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains("artifacts", StringComparison.Ordinal) && !f.EndsWith(".tmp", StringComparison.Ordinal)).Select(File.ReadAllText));
        Assert.DoesNotContain(key, stored, StringComparison.Ordinal);
        Assert.Contains(ApiKeys.Hash(key), stored, StringComparison.Ordinal);

        using var viewer = Client(key);
        Assert.Equal(HttpStatusCode.OK, (await viewer.GetAsync("/api/models")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await admin.DeleteAsync($"/api/keys/{ApiKeys.IdOf(key)}")).StatusCode);
        // A checked key is trusted for a few seconds (the cache); the test's clock moves past that.
        _clock.Advance(TimeSpan.FromSeconds(10));
        using var refused = await viewer.GetAsync("/api/models");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("revoked", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // Bad key requests name the field.
        using var bad = await admin.PostAsJsonAsync("/api/keys", new { name = "x", role = "superuser" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("\"field\":\"role\"", await bad.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_operator_rescales_what_runs_but_deploys_nothing_new()
    {
        var key = await CreateKeyAsync(Roles.Operator);
        using var op = Client(key);
        using (var scale = await op.PutAsJsonAsync("/api/deployments/diabetes-linear/1?wait=true", new { replicas = 1 }))
        {
            Assert.Equal(HttpStatusCode.OK, scale.StatusCode);
        }
        using (var move = await op.PutAsJsonAsync("/api/deployments/diabetes-linear/1", new { replicas = 1, accelerator = "gpu" }))
        {
            Assert.Equal(HttpStatusCode.Forbidden, move.StatusCode);
        }
        using (var undeploy = await op.DeleteAsync("/api/deployments/diabetes-linear/1"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, undeploy.StatusCode);
        }
    }
}
