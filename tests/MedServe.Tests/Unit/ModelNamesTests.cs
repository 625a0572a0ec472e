namespace MedServe.Tests.Unit;

/// <summary>Model names and versions are grain keys and URL segments: exactly the characters the docs name.</summary>
public sealed class ModelNamesTests
{
    [Theory]
    [InlineData("breast-cancer-logreg", true)]
    [InlineData("ct.mr_classifier-2", true)]
    [InlineData("0model", true)]
    [InlineData("a", true)]
    [InlineData("", false)]
    [InlineData(null, false)]
    [InlineData("-model", false)]
    [InlineData(".model", false)]
    [InlineData("Model", false)]
    [InlineData("model name", false)]
    [InlineData("model/1", false)]
    [InlineData("model\n", false)] // a regular expression's $ let this through
    [InlineData("modèle", false)]
    public void Names(string? name, bool valid) => Assert.Equal(valid, ModelNames.IsValidName(name));

    [Fact]
    public void Names_are_at_most_63_characters() =>
        Assert.Equal((true, false), (ModelNames.IsValidName(new string('a', 63)), ModelNames.IsValidName(new string('a', 64))));

    [Theory]
    [InlineData("1", true)]
    [InlineData("v2.0-RC_1", true)]
    [InlineData("V", true)]
    [InlineData("", false)]
    [InlineData(null, false)]
    [InlineData("_1", false)]
    [InlineData("1 2", false)]
    [InlineData("1\n", false)]
    public void Versions(string? version, bool valid) => Assert.Equal(valid, ModelNames.IsValidVersion(version));

    [Fact]
    public void Versions_are_at_most_32_characters() =>
        Assert.Equal((true, false), (ModelNames.IsValidVersion(new string('1', 32)), ModelNames.IsValidVersion(new string('1', 33))));
}
