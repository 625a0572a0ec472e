using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using MedServe.Tests.Support;
using Microsoft.AspNetCore.Builder;
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

    /// <summary>The identity provider's signing key in these tests (a service signing its own tokens).</summary>
    private const string JwtKey = "a-test-signing-key-of-at-least-32-bytes!";

    private static string Token(string subject, string? role, string issuer = "test-idp", string key = JwtKey, DateTime? expires = null)
    {
        var claims = new Dictionary<string, object> { ["sub"] = subject };
        if (role is not null)
        {
            claims["roles"] = role;
        }
        return new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler().CreateToken(new Microsoft.IdentityModel.Tokens.SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = "medserve",
            Claims = claims,
            NotBefore = (expires ?? DateTime.UtcNow.AddHours(1)).AddHours(-2),
            Expires = expires ?? DateTime.UtcNow.AddHours(1),
            SigningCredentials = new Microsoft.IdentityModel.Tokens.SigningCredentials(
                new Microsoft.IdentityModel.Tokens.SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)), Microsoft.IdentityModel.Tokens.SecurityAlgorithms.HmacSha256),
        });
    }
    private readonly string _data = Paths.TempDirectory("security");
    private WebApplication _app = null!;
    private Uri _base = null!;

    public async Task InitializeAsync()
    {
        (_app, _base) = await InProcessNode.StartAsync(_data, Path.Combine(Paths.Samples, "diabetes-linear"), NodeProcess.FreePort(),
            ["--MedServe:Jwt:SigningKey", JwtKey, "--MedServe:Jwt:Issuer", "test-idp", "--MedServe:Jwt:Audience", "medserve",
             // Hundreds of calls without a valid key share one address's budget: rates are RateLimitTests' subject, not this one's.
             "--MedServe:Limits:InferPerSecond", "0", "--MedServe:Limits:ManagementPerSecond", "0"],
            services => services.AddSingleton<TimeProvider>(_clock));
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
        ("POST", "/v2/models/diabetes-linear/records", """{"records":[{"age":61,"sex":1,"bmi":25.8,"bp":90,"s1":280,"s2":195.4,"s3":55,"s4":5,"s5":4.9972,"s6":90}]}""", Permissions.Infer),
        ("POST", "/v2/models/breast-cancer-logreg/versions/1/records", """{"records":[{"mean radius":12}]}""", Permissions.Infer),
        ("POST", "/fhir/models/diabetes-linear/$predict", """{"resourceType":"Bundle","type":"collection","entry":[]}""", Permissions.Infer),
        ("POST", "/fhir/models/breast-cancer-logreg/versions/1/$predict", """{"resourceType":"Parameters"}""", Permissions.Infer),
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
        ("POST", "/dicomweb/studies", "{}", Permissions.Infer),
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
        ("GET", "/studies", null, Permissions.Infer),
        ("GET", "/api/studies", null, Permissions.Infer),
        ("GET", "/keys", null, Permissions.Admin),
    ];

    /// <summary>Pages people open in a browser (the app's, the API reference, the Orleans Dashboard): without a key they send you to sign in.</summary>
    private static bool IsPage(string path) => path is "/api-reference" or "/orleans/"
        || (!path.StartsWith("/api", StringComparison.Ordinal) && !path.StartsWith("/v2", StringComparison.Ordinal) && !path.StartsWith("/fhir", StringComparison.Ordinal) && !path.StartsWith("/dicomweb", StringComparison.Ordinal)
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

    [Fact]
    public async Task A_clinician_sees_only_their_own_jobs_and_an_admin_sees_all()
    {
        var (alice, bob) = (await CreateKeyAsync(Roles.Clinician), await CreateKeyAsync(Roles.Clinician));
        using var a = Client(alice);
        using var b = Client(bob);
        using var admin = Client(NodeFixture.AdminKey);
        const string csv = "age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\n61,1,25.8,90,280,195.4,55,5,4.9972,90\n";
        var job = await NodeFixture.SuccessJsonAsync(a.PostAsync("/api/jobs?model=diabetes-linear", new StringContent(csv, Encoding.UTF8, "text/csv")));
        var id = job["id"]!.GetValue<string>();
        Assert.Equal(ApiKeys.IdOf(alice), job["owner"]!.GetValue<string>());

        Assert.Contains(id, await a.GetStringAsync("/api/jobs"), StringComparison.Ordinal);
        Assert.DoesNotContain(id, await b.GetStringAsync("/api/jobs"), StringComparison.Ordinal);
        Assert.Contains(id, await admin.GetStringAsync("/api/jobs"), StringComparison.Ordinal);
        foreach (var (method, path) in new[] { ("GET", $"/api/jobs/{id}"), ("GET", $"/api/jobs/{id}/results?format=csv"), ("POST", $"/api/jobs/{id}/cancel"), ("DELETE", $"/api/jobs/{id}") })
        {
            using var response = await SendAsync(b, method, path, null);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }
        // Bob cannot take over Alice's job id either.
        using (var taken = await b.PostAsync($"/api/jobs?model=diabetes-linear&id={id}", new StringContent(csv, Encoding.UTF8, "text/csv")))
        {
            Assert.Equal(HttpStatusCode.Conflict, taken.StatusCode);
        }
        using (var own = await a.GetAsync($"/api/jobs/{id}/results?format=csv"))
        {
            Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        }
        using (var admins = await admin.GetAsync($"/api/jobs/{id}"))
        {
            Assert.Equal(HttpStatusCode.OK, admins.StatusCode);
        }
    }

    [Fact]
    public async Task Tokens_of_the_configured_identity_provider_carry_their_role()
    {
        using (var viewer = Client(Token("svc-reader", Roles.Viewer)))
        {
            Assert.Equal(HttpStatusCode.OK, (await viewer.GetAsync("/api/models")).StatusCode);
            Assert.Equal(HttpStatusCode.Forbidden, (await viewer.GetAsync("/api/keys")).StatusCode);
        }
        using (var clinician = Client(Token("svc-ehr", Roles.Clinician)))
        {
            using var infer = await clinician.PostAsync("/v2/models/diabetes-linear/infer", new StringContent(
                """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[61,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, infer.StatusCode);
        }
        using (var noRole = Client(Token("svc-nobody", role: null)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await noRole.GetAsync("/api/models")).StatusCode);
        }
        foreach (var bad in new[] { Token("x", Roles.Admin, issuer: "someone-else"), Token("x", Roles.Admin, key: "another-key-that-is-at-least-32-bytes"), Token("x", Roles.Admin, expires: DateTime.UtcNow.AddHours(-1)) })
        {
            using var client = Client(bad);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/api/models")).StatusCode);
        }
    }
}
