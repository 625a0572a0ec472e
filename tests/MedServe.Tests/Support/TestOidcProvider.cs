using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MedServe.Tests.Support;

/// <summary>
/// A small OpenID Connect provider on a loopback port, standing in for the hospital's: discovery, a JWKS with an RSA
/// key, an authorization endpoint that signs in one configured person at once (no login form) and answers with the
/// code as the client asked (form_post or query), and a token endpoint that checks the client secret, the redirect
/// URI and the PKCE verifier before it issues an RS256 id_token carrying the nonce. It checks what a real provider
/// checks, so a client that gets the flow wrong fails here too.
/// </summary>
public sealed class TestOidcProvider : IAsyncDisposable
{
    public const string ClientId = "medserve-web";
    public const string ClientSecret = "test-client-secret";

    private readonly WebApplication _app;
    private readonly RsaSecurityKey _key;
    private readonly ConcurrentDictionary<string, Grant> _grants = new(StringComparer.Ordinal);

    private sealed record Grant(string RedirectUri, string? Nonce, string? Challenge, string Subject, string Name, string? Role);

    private TestOidcProvider(WebApplication app, RsaSecurityKey key)
    {
        _app = app;
        _key = key;
    }

    /// <summary>The provider's address; its issuer is this URI without the trailing slash.</summary>
    public Uri Authority { get; private set; } = null!;

    /// <summary>The person the next authorization request signs in (subject, display name, the <c>roles</c> claim).</summary>
    public (string Subject, string Name, string? Role) Person { get; set; } = ("dr-who", "Dr Who", Roles.Clinician);

    /// <summary>Token requests refused so far (a wrong secret, verifier, redirect URI or code).</summary>
    public int Refusals { get; private set; }

    public int TokensIssued { get; private set; }

    /// <summary>Starts the provider; <paramref name="host"/> is the name it is reached by (its issuer).</summary>
    public static async Task<TestOidcProvider> StartAsync(string host = "localhost")
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var rsa = RSA.Create(2048);
        var key = new RsaSecurityKey(rsa) { KeyId = "test-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(4)) };
        var app = builder.Build();
        var provider = new TestOidcProvider(app, key);
        provider.Map();
        await app.StartAsync();
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()).Port;
        provider.Authority = new Uri($"http://{host}:{port}/");
        return provider;
    }

    private string Issuer => Authority.ToString().TrimEnd('/');

    private void Map()
    {
        _app.MapGet("/.well-known/openid-configuration", () => Results.Json(new Dictionary<string, object>
        {
            ["issuer"] = Issuer,
            ["authorization_endpoint"] = Issuer + "/authorize",
            ["token_endpoint"] = Issuer + "/token",
            ["jwks_uri"] = Issuer + "/jwks",
            ["response_types_supported"] = new[] { "code" },
            ["response_modes_supported"] = new[] { "form_post", "query" },
            ["subject_types_supported"] = new[] { "public" },
            ["id_token_signing_alg_values_supported"] = new[] { "RS256" },
            ["code_challenge_methods_supported"] = new[] { "S256" },
            ["token_endpoint_auth_methods_supported"] = new[] { "client_secret_post", "client_secret_basic" },
            ["scopes_supported"] = new[] { "openid", "profile" },
        }));
        _app.MapGet("/jwks", () =>
        {
            var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(_key.Rsa.ExportParameters(false)) { KeyId = _key.KeyId });
            return Results.Json(new { keys = new[] { new { kty = "RSA", use = "sig", alg = "RS256", kid = _key.KeyId, n = jwk.N, e = jwk.E } } });
        });
        _app.MapGet("/authorize", (HttpRequest request) =>
        {
            var q = request.Query;
            if (q["client_id"] != ClientId || q["response_type"] != "code" || string.IsNullOrEmpty(q["redirect_uri"]) || !(q["scope"].ToString()).Split(' ').Contains("openid"))
            {
                return Results.BadRequest("invalid authorization request");
            }
            var code = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
            var (subject, name, role) = Person;
            _grants[code] = new Grant(q["redirect_uri"]!, q["nonce"], q["code_challenge"], subject, name, role);
            var redirect = q["redirect_uri"].ToString();
            var state = q["state"].ToString();
            if (q["response_mode"] == "form_post")
            {
                // What providers do for form_post: a page that posts the code back at once.
                var html = $"""
                    <!DOCTYPE html><html><body onload="document.forms[0].submit()">
                    <form method="post" action="{WebUtility.HtmlEncode(redirect)}">
                    <input type="hidden" name="code" value="{code}" /><input type="hidden" name="state" value="{WebUtility.HtmlEncode(state)}" />
                    </form></body></html>
                    """;
                return Results.Content(html, "text/html");
            }
            return Results.Redirect($"{redirect}?code={code}&state={Uri.EscapeDataString(state)}");
        });
        _app.MapPost("/token", async (HttpRequest request) =>
        {
            var form = await request.ReadFormAsync();
            var (id, secret) = (form["client_id"].ToString(), form["client_secret"].ToString());
            if (request.Headers.Authorization.ToString() is { Length: > 6 } basic && basic.StartsWith("Basic ", StringComparison.Ordinal))
            {
                var pair = Encoding.UTF8.GetString(Convert.FromBase64String(basic[6..])).Split(':', 2);
                (id, secret) = (Uri.UnescapeDataString(pair[0]), Uri.UnescapeDataString(pair[1]));
            }
            if (form["grant_type"] != "authorization_code" || id != ClientId || secret != ClientSecret
                || !_grants.TryRemove(form["code"].ToString(), out var grant) || grant.RedirectUri != form["redirect_uri"]
                || grant.Challenge is null || grant.Challenge != Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(form["code_verifier"].ToString()))))
            {
                Refusals++;
                return Results.Json(new { error = "invalid_grant" }, statusCode: 400);
            }
            var claims = new Dictionary<string, object> { ["sub"] = grant.Subject, ["name"] = grant.Name };
            if (grant.Nonce is not null)
            {
                claims["nonce"] = grant.Nonce;
            }
            if (grant.Role is not null)
            {
                claims["roles"] = grant.Role;
            }
            var now = DateTime.UtcNow;
            var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
            {
                Issuer = Issuer,
                Audience = ClientId,
                Claims = claims,
                IssuedAt = now,
                NotBefore = now.AddMinutes(-1),
                Expires = now.AddMinutes(10),
                SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.RsaSha256),
            });
            TokensIssued++;
            return Results.Json(new { access_token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)), token_type = "Bearer", expires_in = 600, id_token = token });
        });
    }

    /// <summary>The node's arguments that make this provider its OpenID Connect sign-in.</summary>
    public IEnumerable<string> NodeArgs() =>
    [
        "--MedServe:Oidc:Authority", Issuer,
        "--MedServe:Oidc:ClientId", ClientId,
        "--MedServe:Oidc:ClientSecret", ClientSecret,
        "--MedServe:Oidc:RequireHttpsMetadata", "false",
    ];

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
