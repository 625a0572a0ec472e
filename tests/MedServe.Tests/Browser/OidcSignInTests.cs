using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using MedServe.Dashboard.Security;
using MedServe.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using static Microsoft.Playwright.Assertions;

namespace MedServe.Tests.Browser;

/// <summary>
/// People sign in through the hospital's identity provider (OpenID Connect, code flow with PKCE, the handler's default
/// form_post answer) in a real browser: the provider runs on another site (<c>localhost</c>, the node on
/// <c>127.0.0.1</c>), its token names a MedServe role, the session carries that role, and the audit trail names the
/// person as <c>idp:{sub}</c>.
/// </summary>
public sealed class OidcSignInTests
{
    [Fact]
    public async Task A_person_signs_in_through_the_identity_provider_and_gets_the_role_its_token_names()
    {
        await using var provider = await TestOidcProvider.StartAsync("localhost");
        var data = Paths.TempDirectory("oidc");
        var (app, address) = await InProcessNode.StartAsync(data, Path.Combine(Paths.Samples, "diabetes-linear"), NodeProcess.FreePort(), provider.NodeArgs());
        try
        {
            await using var browser = await BrowserSession.StartAsync();
            var page = await browser.NewPageAsync(address.ToString().TrimEnd('/'));

            // A page that needs sign-in sends the person to the sign-in page, which offers the organisation's account.
            await page.GotoAsync("/jobs");
            await Expect(page.Locator("#signin-oidc")).ToBeVisibleAsync();
            await BrowserSession.ScreenshotAsync(page, "30-signin-with-provider");
            await page.Locator("#signin-oidc").ClickAsync();

            // Provider -> form_post back -> the page asked for, signed in as the token's person with its role.
            await Expect(page.Locator("#signed-in-as")).ToContainTextAsync($"Dr Who · {Roles.Clinician}", new() { Timeout = 30_000 });
            Assert.EndsWith("/jobs", new Uri(page.Url).AbsolutePath, StringComparison.Ordinal);
            Assert.Equal((1, 0), (provider.TokensIssued, provider.Refusals));
            await BrowserSession.ScreenshotAsync(page, "31-signed-in-through-provider");

            // The role holds: a clinician may not open the admin pages.
            await page.GotoAsync("/keys");
            await Expect(page.Locator("h1")).ToHaveTextAsync("Not allowed");

            // A person whose token names no MedServe role is signed in but may open nothing.
            var other = await browser.NewPageAsync(address.ToString().TrimEnd('/'));
            provider.Person = ("no-role-person", "No Role", null);
            await other.GotoAsync("/signin");
            await other.Locator("#signin-oidc").ClickAsync();
            await Expect(other.Locator("h1")).ToHaveTextAsync("Not allowed", new() { Timeout = 30_000 });

            // Both sign-ins are in the audit trail under the provider's subject, never a token.
            await app.Services.GetRequiredService<AuditWriter>().FlushAsync();
            using var admin = new HttpClient { BaseAddress = address };
            admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", NodeFixture.AdminKey);
            var lines = (await admin.GetStringAsync($"/api/audit?format=jsonl&action={AuditActions.SignIn}")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var actors = lines.Select(l => JsonNode.Parse(l)!["event"]!).Select(e => (e["actor"]!.GetValue<string>(), e["outcome"]!.GetValue<string>())).ToArray();
            Assert.Contains(("idp:dr-who", "ok"), actors);
            Assert.Contains(("idp:no-role-person", "ok"), actors);
            Assert.DoesNotContain(lines, l => l.Contains("eyJ", StringComparison.Ordinal));
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
