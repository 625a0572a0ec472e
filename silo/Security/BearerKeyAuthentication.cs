using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace MedServe.Silo.Security;

/// <summary>
/// <c>Authorization: Bearer &lt;key&gt;</c>. The key in <c>MEDSERVE_ADMIN_KEY</c> (when set) authenticates as admin.
/// Until roles and key management land, other keys and anonymous calls are let through as "caller"
/// (the node is meant for loopback use); the caller's identity is a hash of the key, never the key.
/// </summary>
public sealed class BearerKeyHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "Bearer";

    private static readonly string? AdminKey = Environment.GetEnvironmentVariable("MEDSERVE_ADMIN_KEY") is { Length: > 0 } k ? k : null;

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }
        var key = header["Bearer ".Length..].Trim();
        var id = "key:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16];
        var isAdmin = AdminKey is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(AdminKey));
        var claims = new List<Claim> { new(ClaimTypes.NameIdentifier, id), new(ClaimTypes.Role, isAdmin ? "admin" : "caller") };
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName)));
    }
}

public static class BearerKeyAuthentication
{
    public static IServiceCollection AddBearerKeyAuthentication(this IServiceCollection services)
    {
        services.AddAuthentication(BearerKeyHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, BearerKeyHandler>(BearerKeyHandler.SchemeName, null);
        return services;
    }
}
