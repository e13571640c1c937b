/* placeholder entry point; replaced when the server is wired */
int main(void)
{
    return 0;
}
